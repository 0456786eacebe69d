"""Reports for document managers and administrators: knowledge gaps, « Pas utile » answers, documents.

    build.py      make_report(kind, view, url, records, settings, since) — the one entry of the CLI and the chat
    access.py     who sees what (deny by default)           history.py   the question log and feedback rows
    gaps.py       topics of unanswered questions            topics.py    topic keys, merging, typical question
    feedback.py   « Pas utile » per tag and document        documents.py most / never / old / repealed cited
    charts.py     PNG charts (matplotlib, French)           dashboard.py the chat's « Tableau de bord »

Privacy by design: no user identifier is ever read; a group of fewer than ``COLLECTIVIA_REPORTS__MIN_GROUP``
questions is not shown.
"""
