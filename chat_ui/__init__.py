"""chat_ui"""
