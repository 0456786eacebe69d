"""Before a question is answered: personal data in it (``rag/personal_data.py``) stops it, and the agent is warned in
French with the rule of the local AI charter (point 3.4), then chooses « Envoyer sans ces données » (the question is
answered with each datum masked) or « Modifier ma question » (nothing is sent).

The warning names the kinds found, not the values: the chat keeps it in the conversation's history, and the
history never holds the data (the agent's own message is stored masked by the data layer).
"""

from __future__ import annotations

import chainlit as cl

from chat_ui.safe_markdown import safe_token
from rag.personal_data import screen, warning

SEND_MASKED = "Envoyer sans ces données"
EDIT = "Modifier ma question"
WAIT_S = 600
NOT_SENT = "_Question non envoyée. Reformulez-la sans données personnelles (par exemple « un agent de catégorie C », " \
           "« un administré »)._"


async def checked_question(question: str) -> str | None:
    """``question`` when it holds no personal data; else, after the agent's choice, the masked question or None."""
    screening = screen(question)
    if not screening.found:
        return question
    text = warning(screening.found)
    ask = cl.AskActionMessage(content=text, author="Collectivia", timeout=WAIT_S, raise_on_timeout=False, actions=[
        cl.Action(name="donnees_personnelles", payload={"choice": "masked"}, label=SEND_MASKED, icon="eye-off",
                  tooltip="La question part avec chaque donnée personnelle remplacée par une mention neutre"),
        cl.Action(name="donnees_personnelles", payload={"choice": "edit"}, label=EDIT, icon="pencil",
                  tooltip="Rien n'est envoyé : reformulez la question"),
    ])
    answer = await ask.send()
    choice = ((answer or {}).get("payload") or {}).get("choice")
    chosen = SEND_MASKED if choice == "masked" else EDIT if choice == "edit" else "aucun (délai dépassé)"
    ask.content = f"{text}\n\n_Choix : {chosen}._"  # in place of Chainlit's English « Selected: … »
    await ask.update()
    if choice == "masked":
        shown = safe_token(" ".join(screening.masked.split()))
        await cl.Message(content=f"_Question envoyée sans les données personnelles : « {shown} »_",
                         author="Collectivia").send()
        return screening.masked
    await cl.Message(content=NOT_SENT, author="Collectivia").send()
    return None
