"""The embedded default: Qdrant Edge, the Qdrant engine in-process (``qdrant-edge-py``), one process at a time."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

from qdrant_client import models

from index.store import (  # noqa: E501
    PagedReads,
    CollectionInfo, DENSE, EngineTuning, KEYWORD_INDEXES, LIVE, RRF_K, SPARSE, STAGED,
    STAGED_CONDITION, StoreError,
    StoredPoint, doc_condition, live_filter, version_condition,
)

logger = logging.getLogger(__name__)




def _edge_condition(condition: Any) -> Any:
    import qdrant_edge as qe

    if isinstance(condition, models.Filter):
        return _edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        match = condition.match
        if isinstance(match, models.MatchValue):
            edge_match = qe.MatchValue(match.value)
        elif isinstance(match, models.MatchAny):
            edge_match = qe.MatchAny(list(match.any))
        elif isinstance(match, models.MatchExcept):
            edge_match = qe.MatchExcept(list(match.except_))
        else:
            raise StoreError(f"condition de filtre non prise en charge par le stockage embarqué : {condition!r}")
        return qe.FieldCondition(condition.key, match=edge_match)
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition([str(i) for i in condition.has_id])
    raise StoreError(f"condition de filtre non prise en charge par le stockage embarqué : {condition!r}")


def _edge_filter(filter: models.Filter) -> Any:
    import qdrant_edge as qe

    def conv(items: Any) -> list | None:
        if items is None:
            return None
        items = items if isinstance(items, list) else [items]
        return [_edge_condition(c) for c in items]

    if filter.min_should is not None:
        raise StoreError("min_should n'est pas pris en charge par le stockage embarqué")
    return qe.Filter(must=conv(filter.must), should=conv(filter.should), must_not=conv(filter.must_not))


class IndexBusyError(StoreError):
    """Another process holds the embedded index (the chat, or another command)."""


class EdgeStore(PagedReads):
    """The embedded default: a Qdrant Edge shard under the data directory."""

    INFO_FILE = "collectivia.json"

    def __init__(self, path: Path, info: CollectionInfo, tuning: EngineTuning = EngineTuning()) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.path = Path(path)
        self.info = info
        self.tuning = tuning  # applies when the shard is created (or copied by a migration)
        self._lock = threading.RLock()
        shard_dir = self.path / "shard"
        info_file = self.path / self.INFO_FILE
        self._recover_migration(shard_dir, info_file)
        if info_file.is_file():
            stored = CollectionInfo(**json.loads(info_file.read_text(encoding="utf-8")))
            if info.migrates(stored):
                stored = self._migrate(stored, shard_dir, info_file)
            info.check_compatible(stored, str(self.path))
            self._shard = self._load(shard_dir)
            # Leftovers of an interrupted run: only now, while no other process can be writing (one owner).
            self.discard_staged()
        else:
            if shard_dir.exists() and any(shard_dir.iterdir()):
                raise StoreError(
                    f"{shard_dir} contient un index sans fichier {self.INFO_FILE} : déplacez ou supprimez ce dossier"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = self._create(shard_dir)
            self._write_info(info_file, info)

    def _load(self, shard_dir: Path) -> Any:
        try:
            return self._qe.EdgeShard.load(str(shard_dir))
        except Exception as exc:
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise IndexBusyError(
                    f"l'index embarqué {self.path} est déjà ouvert par un autre processus (le chat « collectivia "
                    "serve » ou une autre indexation ?). Un seul processus peut l'ouvrir à la fois : arrêtez "
                    "l'autre, indexez depuis le chat, ou utilisez un serveur Qdrant (COLLECTIVIA_QDRANT__URL)."
                ) from exc
            raise StoreError(f"l'index embarqué {self.path} ne s'ouvre pas ({exc})") from exc

    def _create(self, shard_dir: Path) -> Any:
        qe, tuning = self._qe, self.tuning
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=self.info.dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()},  # no IDF modifier: see index.store
            hnsw_config=qe.HnswIndexConfig(m=tuning.M, ef_construct=tuning.ef_construct,
                                           full_scan_threshold=tuning.FULL_SCAN_KB),
            optimizers=(qe.EdgeOptimizersConfig(max_segment_size=tuning.max_segment_mb * 1024)
                        if tuning.max_segment_mb else None),
        )
        shard = qe.EdgeShard.create(str(shard_dir), config)
        for name in KEYWORD_INDEXES:
            shard.update(qe.UpdateOperation.create_field_index(
                name, qe.KeywordIndexParams(enable_hnsw=tuning.graph_on(name))))
        shard.update(qe.UpdateOperation.create_field_index(
            "chunk_index", qe.IntegerIndexParams(lookup=True, range=True, enable_hnsw=tuning.graph_on("chunk_index"))))
        return shard

    @staticmethod
    def _write_info(info_file: Path, info: CollectionInfo) -> None:
        tmp = info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
        tmp.replace(info_file)

    # -- schema migration ----------------------------------------------------------------------------------------
    def _migrate(self, stored: CollectionInfo, shard_dir: Path, info_file: Path) -> CollectionInfo:
        """Schema 1 → 2 (the BM25 vectors lose Qdrant's IDF modifier): every point, vectors and payload as they are,
        is copied into a new shard of the current schema, which then replaces the old one. Nothing is embedded again.
        A crash leaves either the old index whole (the copy is dropped and redone at the next start) or the new one
        complete (``_recover_migration`` finishes the swap)."""
        qe = self._qe
        copy_dir, old_dir = self.path / "shard.migrating", self.path / "shard.schema-old"
        if copy_dir.exists():
            shutil.rmtree(copy_dir)
        source = self._load(shard_dir)
        try:
            target = self._create(copy_dir)
            offset = None
            while True:
                records, offset = source.scroll(qe.ScrollRequest(offset=offset, limit=500, with_payload=True,
                                                                 with_vector=True))
                if records:
                    target.update(qe.UpdateOperation.upsert_points(
                        [qe.Point(r.id, r.vector, r.payload) for r in records]))
                if offset is None:
                    break
            target.flush()
            target.close()
        finally:
            source.close()
        shard_dir.rename(old_dir)
        copy_dir.rename(shard_dir)
        migrated = replace(stored, schema=self.info.schema)
        self._write_info(info_file, migrated)
        shutil.rmtree(old_dir, ignore_errors=True)
        logger.info("index %s migré du schéma %s au schéma %s", self.path, stored.schema, migrated.schema)
        return migrated

    def _recover_migration(self, shard_dir: Path, info_file: Path) -> None:
        """Finish or undo a migration a crash interrupted between its two renames."""
        old_dir = self.path / "shard.schema-old"
        if not old_dir.exists():
            return
        if shard_dir.exists():  # the copy was complete and already in place: only the info file is missing
            stored = json.loads(info_file.read_text(encoding="utf-8"))
            self._write_info(info_file, CollectionInfo(**{**stored, "schema": self.info.schema}))
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            old_dir.rename(shard_dir)

    # -- writing ---------------------------------------------------------------------------------------------
    def upsert(self, points: Sequence[StoredPoint]) -> None:
        qe = self._qe
        edge_points = [
            qe.Point(
                p.id,
                {DENSE: [float(x) for x in p.dense], SPARSE: qe.SparseVector(list(p.sparse[0]), list(p.sparse[1]))},
                {**p.payload, **STAGED},
            )
            for p in points
        ]
        with self._lock:
            self._shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def activate(self, doc_id: str, version: str) -> bool:
        qe = self._qe
        old = models.Filter(must=[doc_condition(doc_id)], must_not=[version_condition(version)])
        new = models.Filter(must=[doc_condition(doc_id), version_condition(version)])
        with self._lock:
            if not self._shard.count(qe.CountRequest(exact=True, filter=_edge_filter(new))):
                return False  # the new version vanished (another writer discarded it): keep the old one
            self._shard.update(qe.UpdateOperation.delete_points_by_filter(_edge_filter(old)))
            self._shard.update(qe.UpdateOperation.set_payload_by_filter(_edge_filter(new), LIVE))
            # No flush here: the write-ahead log makes each update durable; flush() runs on close.
        return True

    def discard_staged(self, doc_id: str | None = None) -> int:
        qe = self._qe
        staged = models.Filter(
            must=[STAGED_CONDITION] + ([doc_condition(doc_id)] if doc_id else [])
        )
        with self._lock:
            n = self._shard.count(qe.CountRequest(exact=True, filter=_edge_filter(staged)))
            if n:
                self._shard.update(qe.UpdateOperation.delete_points_by_filter(_edge_filter(staged)))
        return n

    def delete_document(self, doc_id: str) -> None:
        with self._lock:
            self._shard.update(
                self._qe.UpdateOperation.delete_points_by_filter(_edge_filter(models.Filter(must=[doc_condition(doc_id)])))
            )
            self._shard.flush()

    # -- reading ---------------------------------------------------------------------------------------------
    def _reading(self) -> threading.RLock:
        return self._lock

    def _page(self, filter: models.Filter, size: int, offset: Any, fields: list[str] | bool) -> tuple[list, Any]:
        return self._shard.scroll(
            self._qe.ScrollRequest(offset=offset, limit=size, filter=_edge_filter(filter), with_payload=fields)
        )

    def count(self, filter: models.Filter | None = None) -> int:
        with self._lock:
            return self._shard.count(self._qe.CountRequest(exact=True, filter=_edge_filter(live_filter(filter))))

    def _search(self, scope: models.Filter, stages: list[tuple[str, Any]], *, limit: int, prefetch: int,
                with_dense: bool) -> list[Any]:
        qe = self._qe
        edge_scope = _edge_filter(scope)
        queries = [qe.Query.Nearest(vector if using == DENSE else qe.SparseVector(*vector), using=using)
                   for using, vector in stages]
        vectors = [DENSE] if with_dense else False
        if len(queries) == 1:
            request = qe.QueryRequest(limit=limit, query=queries[0], filter=edge_scope, with_payload=True,
                                      with_vector=vectors)
        else:
            request = qe.QueryRequest(
                limit=limit,
                prefetches=[qe.Prefetch(limit=prefetch, query=q, filter=edge_scope) for q in queries],
                query=qe.Fusion.Rrf(k=RRF_K),
                filter=edge_scope,
                with_payload=True,
                with_vector=vectors,
            )
        with self._lock:
            return self._shard.query(request)

    def optimize(self) -> None:
        with self._lock:
            self._shard.optimize()

    def close(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None


