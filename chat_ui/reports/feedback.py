"""Answers the agents rated « Pas utile »: how many per tag and per cited document, and their comments — masked of
personal data and shown only inside a group (tag, or « sans étiquette ») of at least ``min_group`` answers.

An opinion belongs to the services of its logged question (the asking agent's services); one given before the
question log existed belongs to the services of its cited documents (``doc_services``), or to the administrators'
view only.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from chat_ui.reports.access import View
from chat_ui.reports.history import FeedbackEntry

UNTAGGED = "sans étiquette"
COMMENTS_PER_GROUP = 10


@dataclass(frozen=True, slots=True)
class TagGroup:
    tag: str
    count: int
    comments: tuple[str, ...]  # newest first, masked, at most COMMENTS_PER_GROUP

    def to_json(self) -> dict:
        return {"etiquette": self.tag, "reponses": self.count, "commentaires": list(self.comments)}


@dataclass(frozen=True, slots=True)
class DocumentLine:
    doc_id: str
    title: str
    count: int

    def to_json(self) -> dict:
        return {"doc_id": self.doc_id, "titre": self.title, "reponses": self.count}


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    view: View
    since: dt.datetime | None
    min_group: int
    opinions: int  # every opinion of the view in the period
    not_useful: int
    tags: tuple[TagGroup, ...]
    documents: tuple[DocumentLine, ...]
    hidden_groups: int

    def to_json(self) -> dict:
        return {"rapport": "avis", "services": self.view.label,
                "depuis": self.since.date().isoformat() if self.since else None, "seuil": self.min_group,
                "avis": self.opinions, "pas_utiles": self.not_useful, "etiquettes": [t.to_json() for t in self.tags],
                "documents": [d.to_json() for d in self.documents], "groupes_masques": self.hidden_groups}

    def csv_rows(self) -> list[dict]:
        rows = [{"section": "étiquette", "cle": t.tag, "titre": "", "reponses": t.count,
                 "commentaires": " | ".join(t.comments)} for t in self.tags]
        rows += [{"section": "document", "cle": d.doc_id, "titre": d.title, "reponses": d.count, "commentaires": ""}
                 for d in self.documents]
        return rows


def feedback_report(entries: Iterable[FeedbackEntry], view: View, *, min_group: int,
                    doc_services: Mapping[str, tuple[str, ...]], titles: Mapping[str, str],
                    since: dt.datetime | None = None) -> FeedbackReport:
    opinions = 0
    bad: list[FeedbackEntry] = []
    for entry in entries:
        services = entry.services
        if services is None:
            services = tuple({s for d in entry.doc_ids for s in doc_services.get(d, ())}) or None
        if services is None and view.services is not None:
            continue
        if services is not None and not view.covers(services):
            continue
        opinions += 1
        if not entry.useful:
            bad.append(entry)
    bad.sort(key=lambda e: e.created_at, reverse=True)
    by_tag: dict[str, list[FeedbackEntry]] = defaultdict(list)
    for entry in bad:
        for tag in entry.tags or (UNTAGGED,):
            by_tag[tag].append(entry)
    hidden = 0
    tags = []
    for tag, members in sorted(by_tag.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(members) < min_group:
            hidden += 1
            continue
        comments = tuple(e.comment for e in members if e.comment.strip())[:COMMENTS_PER_GROUP]
        tags.append(TagGroup(tag, len(members), comments))
    per_doc = Counter(d for e in bad for d in set(e.doc_ids))
    documents = []
    for doc_id, count in sorted(per_doc.items(), key=lambda kv: (-kv[1], kv[0])):
        if count < min_group:
            hidden += 1
            continue
        documents.append(DocumentLine(doc_id, titles.get(doc_id, ""), count))
    return FeedbackReport(view=view, since=since, min_group=min_group, opinions=opinions, not_useful=len(bad),
                          tags=tuple(tags), documents=tuple(documents), hidden_groups=hidden)
