"""After each answer of the chat: one row of the question log (``history.question_row``), written by the data layer
through its write queue. Never fails an answer: a history that cannot be written is said by the data layer."""

from __future__ import annotations

import logging
from typing import Iterable

from rag.access import Scope, User

logger = logging.getLogger(__name__)

REPEALED = "abroge"


def repealed_cited(final, cited: Iterable[str], scope: Scope | None) -> list[str]:
    """The cited documents whose status is repealed — reached only when the agent included repealed texts."""
    if scope is None or not scope.include_repealed:
        return []
    wanted = set(cited)
    return sorted({s.doc_id for s in final.sources if s.doc_id in wanted and s.payload.get("status") == REPEALED})


async def record_answer(user: User, answer_id: str, thread_id: str | None, question: str, final,
                        cited: Iterable[str], scope: Scope | None) -> None:
    """Log one answered question (masked, with the asking agent's services, never their id)."""
    from chainlit.data import get_data_layer

    layer = get_data_layer()
    if layer is None or not hasattr(layer, "log_question"):
        return
    cited = list(cited)
    try:
        await layer.log_question(answer_id=answer_id, thread_id=thread_id, services=sorted(user.services),
                                 outcome=final.outcome, refused=bool(final.refused), question=question,
                                 doc_ids=cited, repealed_doc_ids=repealed_cited(final, cited, scope))
    except Exception:  # the answer is on screen; the log says what went wrong
        logger.exception("question non journalisée")
