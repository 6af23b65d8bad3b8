"""Typed settings: the one place that reads the environment (``GAIVERSE_*``) and the optional TOML file.

Embedded defaults need no configuration: everything lives under ``data_dir`` and every
service listens on 127.0.0.1. Pointing ``GAIVERSE_S3_ENDPOINT`` at a MinIO, ``GAIVERSE_PREFECT_API_URL``
at a Prefect server or ``GAIVERSE_RAY_ADDRESS`` at a Ray cluster moves that piece to its
production form with no code change (docs/DEPLOY.md).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

REPO_ROOT = Path(__file__).resolve().parent.parent


def _toml_path() -> Path | None:
    """The TOML file named by GAIVERSE_CONFIG, else ./gaiverse.toml when it exists."""
    named = os.environ.get("GAIVERSE_CONFIG")
    if named:
        return Path(named)
    default = Path.cwd() / "gaiverse.toml"
    return default if default.exists() else None


class Settings(BaseSettings):
    """Endpoints, paths and keys of one gaiverse installation."""

    model_config = SettingsConfigDict(env_prefix="GAIVERSE_", extra="forbid", validate_default=True)

    data_dir: Path = Field(default_factory=lambda: REPO_ROOT / ".gaiverse")
    """Root of everything the embedded stack writes: object store, catalog, Prefect DB, logs, pids."""

    # object store
    s3_endpoint: str | None = None
    """host:port of an external S3 server (MinIO). None starts the embedded server."""
    s3_secure: bool = False
    """Use https for the external S3 endpoint."""
    s3_access_key: str = "gaiverse"
    """Access key; the embedded server is started with it."""
    s3_secret_key: SecretStr = SecretStr("gaiverse-local-secret")
    """Secret key; the embedded server checks SigV4 signatures made with it."""
    s3_bucket: str = "gaiverse"
    """Bucket holding every content-addressed object."""
    s3_port: int = Field(default=9400, ge=1, le=65535)
    """Port of the embedded S3 server."""

    # orchestration and compute
    prefect_api_url: str | None = None
    """URL of a Prefect server API. None: the embedded server at prefect_port."""
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    """Port of the embedded Prefect server (UI and API)."""
    ray_address: str | None = None
    """Address of a Ray cluster (``ray://`` or ``host:port``). None: a local Ray started in-process."""
    ray_head_port: int = Field(default=6390, ge=1, le=65535)
    """GCS port of the Ray head the embedded stack starts (flow runs share its actors)."""
    ray_num_cpus: int | None = Field(default=None, ge=1)
    """CPUs given to a local Ray; None lets Ray count them."""
    ray_stage_resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources every model-stage actor requests, e.g. {"gpu_stage": 1} to pin stages to GPU nodes."""

    # API and terminal
    api_host: str = "127.0.0.1"
    """Interface the API binds to."""
    api_port: int = Field(default=8400, ge=1, le=65535)
    """Port of the API and the web terminal."""
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Largest upload the API accepts; larger ones get 413 before anything is stored."""
    admin_key: SecretStr | None = None
    """Admin API key to create on first start; None generates one and prints it once."""

    # personal data (PER-f1, docs/PRIVACY.md)
    keys_dir: Path | None = None
    """Where the personal-data master key file lives (mode 0600); None: <data_dir>/keys. Put it off the data volume."""
    privacy_key: SecretStr | None = None
    """The personal-data master key (urlsafe base64 of 32 bytes) from a secret store; overrides the key file."""
    retention_days: int = Field(default=365, ge=1, le=36500)
    """Interactions (and their media) older than this are deleted by the daily retention flow."""

    # live NPC dialogue (NPC-c1, NPC-d1)
    npc_generator: Literal["extractive", "llm", "auto"] = "auto"
    """Who phrases live NPC answers: the grounded extractive generator, the local LLM, or the LLM when installed."""

    # API load measurement (PER-g1)
    server_timing: bool = False
    """Add a ``Server-Timing: app;dur=<ms>`` header to every API answer (time inside the app, for the load
    benchmark to tell server time from queueing and client time); off by default: it reveals timings."""

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_has_no_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(f"`s3_endpoint` must be host:port without a scheme (set s3_secure), got {value!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = _toml_path()
        if toml is not None:
            if not toml.exists():
                raise FileNotFoundError(f"GAIVERSE_CONFIG names {toml}, which does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    # derived paths -----------------------------------------------------------------------
    @property
    def embedded_s3(self) -> bool:
        return self.s3_endpoint is None

    @property
    def s3_address(self) -> str:
        return self.s3_endpoint or f"127.0.0.1:{self.s3_port}"

    @property
    def prefect_url(self) -> str:
        return self.prefect_api_url or f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.duckdb"

    @property
    def personalization_path(self) -> Path:
        """The personalization DuckDB: interactions, tasks, consents, per-user keys (wrapped)."""
        return self.data_dir / "personalization.duckdb"

    @property
    def personal_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "s3"

    @property
    def run_dir(self) -> Path:
        """Pid files and service logs of the embedded stack."""
        return self.data_dir / "run"

    @property
    def prefect_home(self) -> Path:
        return self.data_dir / "prefect"

    def public_dict(self) -> dict[str, Any]:
        """Settings without secrets, for `gaiverse status` and logs."""
        return self.model_dump(exclude={"s3_secret_key", "admin_key", "privacy_key"}, mode="json")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()


def prefect_env(settings: Settings) -> dict[str, str]:
    """Environment for Prefect clients and servers of this installation (not read by gaiverse itself)."""
    return {
        "PREFECT_API_URL": settings.prefect_url,
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": settings.prefect_url,
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(settings.prefect_port),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{settings.prefect_home / 'prefect.db'}",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_LOCAL_STORAGE_PATH": str(settings.prefect_home / "results"),
        "RAY_AUTH_MODE": "disabled",
    }
