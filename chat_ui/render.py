"""An ``Answer`` as the chat shows it: the Markdown text with its [n] markers and notices, and one source card per
cited source (title, type, services, page, section, passage, link opening the original at the page).

Pure: plain data in, plain data out. ``app.py`` turns each card into a Chainlit ``CustomElement`` named ``Source``
(``static/elements/Source.jsx``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import quote

from chat_ui.safe_markdown import DEFAULT_ALLOWED_HOSTS, safe_markdown
from chat_ui.texts import doc_type_label, join_fr, service_label
from rag.assistant import Answer
from rag.citations import Citation
from rag.retrieve import ScoredChunk

PASSAGE_CHARS = 1200
SOURCE_ELEMENT = "Source"
FEEDBACK_ELEMENT = "Avis"


@dataclass(frozen=True, slots=True)
class RenderedAnswer:
    text: str
    sources: tuple[dict, ...] = ()
    cited_doc_ids: tuple[str, ...] = field(default=())


def _trim(text: str, limit: int = PASSAGE_CHARS) -> str:
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + " …"


def document_url(doc_id: str, page: int | None) -> str:
    """The authorised route of the chat that opens the original document (``files.py``), at the page."""
    url = f"/documents/{quote(doc_id, safe='')}"
    return f"{url}#page={page}" if page else url


def _link_label(doc_type: str, page: int | None) -> str:
    if doc_type == "fiche":
        return "Ouvrir la fiche sur service-public.fr"
    return f"Ouvrir le document à la page {page}" if page else "Ouvrir le document"


def _card(n: int, *, doc_id: str, title: str, doc_type: str, services: Sequence[str], page: int | None,
          section: str, passage: str, url: str, supported: bool) -> dict:
    return {
        "n": n,
        "doc_id": doc_id,
        "title": title or doc_id,
        "type": doc_type_label(doc_type),
        "services": [service_label(s) for s in services],
        "page": page,
        "section": section or "",
        "passage": _trim(passage),
        "url": url if url.startswith(("/documents/", "https://", "http://")) else "",
        "link_label": _link_label(doc_type, page),
        "supported": supported,
        "warning": "" if supported else
        "Citation à vérifier : la phrase qui la cite n'est pas clairement reprise dans ce passage.",
    }


def citation_card(citation: Citation) -> dict:
    return _card(
        citation.n, doc_id=citation.doc_id, title=citation.title, doc_type=citation.doc_type,
        services=citation.services, page=citation.page, section=citation.section, passage=citation.passage,
        url=citation.open_url or document_url(citation.doc_id, citation.page), supported=citation.supported,
    )


def chunk_card(n: int, chunk: ScoredChunk) -> dict:
    return _card(
        n, doc_id=chunk.doc_id, title=chunk.title, doc_type=chunk.doc_type, services=chunk.services,
        page=chunk.page, section=chunk.section, passage=chunk.text, url=document_url(chunk.doc_id, chunk.page),
        supported=True,
    )


def render_answer(answer: Answer, *, scoped: bool = False,
                  allowed_hosts: Sequence[str] = DEFAULT_ALLOWED_HOSTS) -> RenderedAnswer:
    """The final message of an answer and its source cards. The answer's text comes from documents or the model:
    it goes into the Markdown through ``safe_markdown`` (no image, no link outside the allowed sites)."""
    parts = [_with_span(answer.text.strip(), answer.answer_span, allowed_hosts)]
    if answer.refused:
        hint = ("Reformulez votre question avec d'autres mots, ou élargissez le périmètre de recherche (réglages "
                "sous la zone de saisie) : il est restreint pour cette conversation."
                if scoped else
                "Reformulez votre question avec d'autres mots ; si le document existe, demandez au gestionnaire "
                "documentaire de votre service de l'ajouter.")
        parts.append(f"_{hint}_")
        return RenderedAnswer(text="\n\n".join(parts))

    if answer.error:
        # The model failed: the sources found are shown as they are, for the agent to read.
        cards = tuple(chunk_card(n, s) for n, s in enumerate(answer.sources, start=1))
        return RenderedAnswer(text="\n\n".join(parts), sources=cards,
                              cited_doc_ids=tuple(dict.fromkeys(s.doc_id for s in answer.sources)))

    cards = tuple(citation_card(c) for c in answer.citations)
    unsupported = [f"[{n}]" for n in answer.unsupported]
    if unsupported:
        which = join_fr(unsupported)
        parts.append(
            f"> ⚠ Vérifiez {'la citation' if len(unsupported) == 1 else 'les citations'} {which} : le passage cité "
            "ne reprend pas clairement la phrase qui s'y réfère."
        )
    if answer.outcome == "uncertain":
        parts.append("_Ces passages sont les plus proches de votre question mais ne semblent pas y répondre "
                     "directement : ne les utilisez pas comme une réponse sans les lire._")
    elif cards and answer.extractive:
        parts.append("_Extraits choisis automatiquement dans les sources ci-dessous : vérifiez-les avant de les "
                     "utiliser._")
    elif cards:
        parts.append("_Réponse assistée par IA, fondée sur les sources ci-dessous : vérifiez-la avant de l'utiliser._")
    elif not answer.refused:
        parts.append("_Réponse assistée par IA sans source citée : ne l'utilisez pas sans vérification._")
    return RenderedAnswer(text="\n\n".join(parts), sources=cards,
                          cited_doc_ids=tuple(dict.fromkeys(c.doc_id for c in answer.citations)))


def _with_span(text: str, span: str | None, allowed_hosts: Sequence[str]) -> str:
    """The answer as safe Markdown, with the span that answers (an amount, a date, a name…) in bold, once, at its
    first place after the header. The whole text is made safe first; the span is bolded only where it stands as is."""
    safe = safe_markdown(text, allowed_hosts)
    shown = safe_markdown(span, allowed_hosts).strip() if span else ""
    at = safe.find(shown, safe.find("«")) if shown and "*" not in shown else -1
    if at < 0:
        return safe
    return f"{safe[:at]}**{shown}**{safe[at + len(shown):]}"


def feedback_props(message_id: str, tags: Sequence[str]) -> dict:
    """Initial props of the feedback card (``static/elements/Avis.jsx``) under an answer."""
    return {"message_id": message_id, "tags": list(tags), "value": None, "selected": [], "comment": "",
            "sent": False}
