"""chat_ui — the Chainlit chat of agents and document managers (`collectivia serve`)."""
