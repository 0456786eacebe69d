"""An LLM judge of faithfulness and correctness, speaking Mistral's chat API (JSON out)."""


from __future__ import annotations

import json
import logging
import os
from typing import Any

from evals.config import JudgeConfig

logger = logging.getLogger(__name__)


JUDGE_PROMPT = """Tu évalues la réponse d'un assistant documentaire d'une collectivité territoriale.
On te donne la question d'un agent, la réponse de l'assistant, les extraits de documents qu'il cite, et la réponse
de référence attendue (si elle est connue).

Note deux critères entre 0 et 1 :
- "faithfulness" (fidélité) : 1 si chaque affirmation de la réponse est étayée par les extraits cités, 0 si la
  réponse affirme des choses absentes des extraits ou contraires à eux ;
- "correctness" (exactitude) : 1 si la réponse donne l'information de la réponse de référence, 0 si elle est fausse
  ou ne répond pas ; null si aucune référence n'est fournie.

Réponds uniquement par un objet JSON : {"faithfulness": <nombre>, "correctness": <nombre ou null>,
"rationale": "<une phrase>"}."""


class Judge:
    """Scores faithfulness and correctness of an answer with a chat model speaking Mistral's API (JSON out)."""

    def __init__(self, config: JudgeConfig) -> None:
        import httpx

        self.config = config
        key = os.environ.get(config.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=config.endpoint.rstrip("/"), headers=headers, timeout=config.timeout_s)
        self.prompt = JUDGE_PROMPT

    def messages(self, question: str, answer: str, passages: list[str], reference: str | None) -> list[dict]:
        sources = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(aucun extrait cité)"
        user = (f"Question : {question}\n\nRéponse de l'assistant :\n{answer}\n\nExtraits cités :\n{sources}\n\n"
                f"Réponse de référence : {reference or '(inconnue)'}")
        return [{"role": "system", "content": self.prompt}, {"role": "user", "content": user}]

    def judge(self, question: str, answer: str, passages: list[str], reference: str | None) -> dict:
        body = {"model": self.config.model, "temperature": 0, "messages": self.messages(question, answer, passages, reference),
                "response_format": {"type": "json_object"}}
        error = None
        for _ in range(self.config.max_retries + 1):
            try:
                response = self._client.post("/chat/completions", json=body)
                response.raise_for_status()
                content = response.json()["choices"][0]["message"]["content"]
                return _parse_judgement(content)
            except Exception as exc:  # network, HTTP or format: recorded per question, the run goes on
                error = f"{type(exc).__name__}: {exc}"
        return {"faithfulness": None, "correctness": None, "error": error}

    def close(self) -> None:
        self._client.close()


def _parse_judgement(content: Any) -> dict:
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    text = str(content).strip()
    start, end = text.find("{"), text.rfind("}")
    data = json.loads(text[start : end + 1] if start >= 0 and end > start else text)

    def score(value: Any) -> float | None:
        if value is None:
            return None
        return min(1.0, max(0.0, float(value)))

    return {"faithfulness": score(data.get("faithfulness")), "correctness": score(data.get("correctness")),
            "rationale": str(data.get("rationale", ""))[:500]}

