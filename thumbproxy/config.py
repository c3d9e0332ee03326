"""Settings: one typed, immutable object read from CLI > environment > config file > defaults."""

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG_FILE = Path("config/thumbproxy.toml")
CONFIG_ENV = "THUMBPROXY_CONFIG"

ALL_CONFIGURATION_TYPES = (
    "ARC",
    "BIAS",
    "BPM",
    "DARK",
    "DOUBLE",
    "EXPERIMENTAL",
    "EXPOSE",
    "GUIDE",
    "LAMPFLAT",
    "SKYFLAT",
    "SPECTRUM",
    "STANDARD",
    "TARGET",
    "TRAILED",
)


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "thumbproxy")


def _default_workers() -> int:
    # The CPUs this process may run on, which a container's cpuset limits; cpu_count() does not.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _text(value: Any) -> str:
    return str(value).strip()


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _upper_names(value: Any) -> tuple[str, ...]:
    return tuple(name.upper() for name in _names(value))


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}")
        return number

    return parse


def _one_of(*choices: str) -> Callable[[Any], str]:
    """A parser of a setting that takes one of `choices`, given in any case and answered in theirs."""
    in_their_case = str.upper if all(choice.isupper() for choice in choices) else str.lower
    listed = " or ".join(choices) if len(choices) == 2 else f"one of {', '.join(choices)}"

    def parse(value: Any) -> str:
        choice = in_their_case(str(value).strip())
        if choice not in choices:
            raise ValueError(f"must be {listed}")
        return choice

    return parse


def _seconds(value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not 0 < number < float("inf"):
        raise ValueError("must be a positive number of seconds")
    return number


def _archive_url(value: Any) -> str:
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ValueError("must be an http(s):// URL or a file:// directory")
    # Endpoints are joined onto it, as the existing service does.
    return url if url.endswith("/") else url + "/"


def _optional_http_url(value: Any) -> str:
    url = str(value).strip().rstrip("/")
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise ValueError("must be an http(s):// URL or empty")
    return url


def _hosts(value: Any) -> tuple[str, ...]:
    hosts = tuple(name.lower() for name in _names(value))
    if any("/" in host or "@" in host or " " in host for host in hosts):
        raise ValueError("must be comma-separated host names, each with an optional :port, e.g. thumbs.example.org")
    return hosts


def _color_filters(value: Any) -> tuple[tuple[str, ...], ...]:
    groups = tuple(_names(group) for group in str(value).split(";"))
    if len(groups) != 3 or not all(groups):
        raise ValueError("must be three ';'-separated groups of filter names: red;visual;blue, e.g. R,rp;V;B")
    return groups


READINESS_CHECKS = ("disk", "pool", "s3", "archive", "tmp")


def _readiness_checks(value: Any) -> tuple[str, ...]:
    checks = tuple(name.lower() for name in _names(value))
    unknown = sorted(set(checks) - set(READINESS_CHECKS))
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r}; the checks are {', '.join(READINESS_CHECKS)}")
    return checks


MIN_SIGNING_KEY_LENGTH = 16


def _signing_keys(value: Any) -> tuple[str, ...]:
    keys = _names(value)
    if any(len(key) < MIN_SIGNING_KEY_LENGTH for key in keys):
        raise ValueError(f"each comma-separated key must be at least {MIN_SIGNING_KEY_LENGTH} characters")
    return keys


def _cors_origin(value: Any) -> str:
    origin = str(value).strip()
    # It is sent as a header value: a space or line break in it would be a different header, or several.
    plain = origin.isprintable() and " " not in origin
    parts = urlsplit(origin)
    if origin not in ("", "*") and not (plain and parts.scheme in ("http", "https") and parts.netloc):
        raise ValueError("must be *, an origin such as https://dashboards.example.org, or empty for none")
    return origin.rstrip("/")


@dataclass(frozen=True)
class Setting:
    """How one setting is named in the environment and the config file, parsed and defaulted."""

    field: str
    env: str
    parse: Callable[[Any], Any]
    default: Callable[[], Any]
    help: str
    # A secret's rejected value is never repeated in the error: it would end up in logs.
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "archive_api_url",
        "ARCHIVE_API_URL",
        _archive_url,
        lambda: "https://archive-api.lco.global/",
        "Archive API root ending in a slash, or a file:// directory of FITS files",
    ),
    Setting(
        "archive_api_token",
        "ARCHIVE_API_TOKEN",
        _text,
        lambda: "",
        "Archive API token of the service's own calls (readiness probes, and calls for anonymous callers, "
        "whose answers are cut to public frames): its own quota instead of the anonymous one; empty: none",
        secret=True,
    ),
    Setting(
        "tmp_dir", "TMP_DIR", _text, lambda: "/tmp/", "Directory for downloaded FITS files while they are rendered"
    ),
    Setting(
        "aws_bucket",
        "AWS_BUCKET",
        _text,
        lambda: "",
        "S3 bucket of the second cache level; empty: the disk level alone",
    ),
    Setting("aws_access_key_id", "AWS_ACCESS_KEY_ID", _text, lambda: "", "S3 access key id"),
    Setting("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", _text, lambda: "", "S3 secret access key"),
    Setting("aws_default_region", "AWS_DEFAULT_REGION", _text, lambda: "us-west-2", "S3 region"),
    Setting(
        "storage_url",
        "STORAGE_URL",
        _optional_http_url,
        lambda: "",
        "Endpoint of an S3-compatible store; empty means AWS",
    ),
    Setting(
        "s3_prefix",
        "THUMBPROXY_S3_PREFIX",
        _text,
        lambda: "thumbnails",
        "Key prefix of thumbnails in the bucket (objects are `<prefix>/<frame id>/<key>.<jpg|png|webp>`)",
    ),
    Setting(
        "s3_addressing_style",
        "THUMBPROXY_S3_ADDRESSING_STYLE",
        _one_of("auto", "virtual", "path"),
        lambda: "auto",
        "S3 addressing: auto, virtual or path (path for most MinIO and Ceph set-ups)",
    ),
    Setting(
        "s3_timeout",
        "THUMBPROXY_S3_TIMEOUT",
        _seconds,
        lambda: 5.0,
        "Seconds for one S3 call; a slower S3 is skipped, never waited on",
    ),
    Setting(
        "url_expiry",
        "THUMBPROXY_URL_EXPIRY",
        _integer(1, 604800),
        lambda: 604800,
        "Seconds a pre-signed thumbnail URL stays valid (SigV4 allows at most a week)",
    ),
    Setting(
        "required_frame_validation_keys",
        "REQUIRED_FRAME_VALIDATION_KEYS",
        _names,
        lambda: ("configuration_type", "request_id", "filename"),
        "Comma-separated record keys a frame must have to be thumbnailed",
    ),
    Setting(
        "valid_configuration_types",
        "VALID_CONFIGURATION_TYPES",
        _upper_names,
        lambda: ALL_CONFIGURATION_TYPES,
        "Comma-separated configuration types that get thumbnails",
    ),
    Setting(
        "valid_configuration_types_for_color_thumbs",
        "VALID_CONFIGURATION_TYPES_FOR_COLOR_THUMBS",
        _upper_names,
        lambda: ("EXPOSE", "STANDARD"),
        "Comma-separated configuration types that get colour thumbnails",
    ),
    Setting(
        "color_filters",
        "THUMBPROXY_COLOR_FILTERS",
        _color_filters,
        lambda: (("R", "rp"), ("V",), ("B",)),
        "Filters of the red;visual;blue channels of colour thumbnails, e.g. ip;rp;gp for SDSS sets",
    ),
    Setting("host", "THUMBPROXY_HOST", _text, lambda: "0.0.0.0", "Address to listen on"),
    Setting("port", "THUMBPROXY_PORT", _integer(1, 65535), lambda: 8080, "Port to listen on"),
    Setting(
        "cache_dir",
        "THUMBPROXY_CACHE_DIR",
        _text,
        _default_cache_dir,
        "Directory of the disk cache (and of the demo archive)",
    ),
    Setting(
        "cache_size_mb",
        "THUMBPROXY_CACHE_SIZE_MB",
        _integer(1),
        lambda: 1024,
        "Size bound of the disk cache in MiB; least recently used thumbnails go first",
    ),
    Setting(
        "memory_cache_mb",
        "THUMBPROXY_MEMORY_CACHE_MB",
        _integer(0),
        lambda: 64,
        "Size bound in MiB of the in-process level in front of the disk cache; 0 turns it off",
    ),
    Setting(
        "open_files",
        "THUMBPROXY_OPEN_FILES",
        _integer(0),
        lambda: 512,
        "Disk-level thumbnails kept open so their hits are read without a thread; 0 turns it off",
    ),
    Setting("workers", "THUMBPROXY_WORKERS", _integer(1, 256), _default_workers, "Render processes"),
    Setting(
        "render_cpu_seconds",
        "THUMBPROXY_RENDER_CPU_SECONDS",
        _seconds,
        lambda: 20.0,
        "CPU seconds one render job may use before it is stopped and answered 422 (a 4096x4096 frame takes "
        "about 0.1, a colour composite of three 0.4)",
    ),
    Setting(
        "render_memory_mb",
        "THUMBPROXY_RENDER_MEMORY_MB",
        _integer(0),
        lambda: 2048,
        "MiB of memory one render job may take beyond what an idle render worker maps (its address-space "
        "limit); past it the job is stopped and answered 422 (a 4096x4096 colour composite takes about 500); "
        "0: no limit",
    ),
    Setting(
        "preview_size",
        "THUMBPROXY_PREVIEW_SIZE",
        _integer(0),
        lambda: 1024,
        "Long side in pixels of the reduced copy of each rendered frame kept on disk for its later "
        "thumbnails; 0 turns previews off",
    ),
    Setting(
        "public_url",
        "THUMBPROXY_PUBLIC_URL",
        _optional_http_url,
        lambda: "",
        "Base URL clients reach this service at, for the JSON url; empty: taken from the request",
    ),
    Setting(
        "allowed_hosts",
        "THUMBPROXY_ALLOWED_HOSTS",
        _hosts,
        lambda: (),
        "Without THUMBPROXY_PUBLIC_URL: comma-separated Host values (name[:port]) a JSON answer's url may be "
        "built from and shared by caches; from any other Host it is private",
    ),
    Setting(
        "max_size",
        "THUMBPROXY_MAX_SIZE",
        _integer(1, 20000),
        lambda: 2000,
        "Largest width or height a caller may ask for",
    ),
    Setting(
        "max_fits_mb",
        "THUMBPROXY_MAX_FITS_MB",
        _integer(1),
        lambda: 512,
        "Largest FITS file that is downloaded, in MiB",
    ),
    Setting(
        "archive_max_answer_mb",
        "THUMBPROXY_ARCHIVE_MAX_ANSWER_MB",
        _integer(1),
        lambda: 16,
        "Largest archive API answer read, in MiB (a page of 1000 frame records is 2 to 5); larger is a 502",
    ),
    Setting(
        "archive_connect_timeout",
        "THUMBPROXY_ARCHIVE_CONNECT_TIMEOUT",
        _seconds,
        lambda: 5.0,
        "Seconds to connect to the archive",
    ),
    Setting(
        "archive_timeout", "THUMBPROXY_ARCHIVE_TIMEOUT", _seconds, lambda: 30.0, "Seconds for one archive API call"
    ),
    Setting(
        "download_timeout", "THUMBPROXY_DOWNLOAD_TIMEOUT", _seconds, lambda: 300.0, "Seconds to download one FITS file"
    ),
    Setting(
        "metadata_ttl",
        "THUMBPROXY_METADATA_TTL",
        _seconds,
        lambda: 300.0,
        "Seconds a public frame's archive record is reused for every caller",
    ),
    Setting(
        "private_metadata_ttl",
        "THUMBPROXY_PRIVATE_METADATA_TTL",
        _seconds,
        lambda: 60.0,
        "Seconds a proprietary frame's record is reused, for the same Authorization header only",
    ),
    Setting(
        "max_age",
        "THUMBPROXY_MAX_AGE",
        _integer(0),
        lambda: 604800,
        "Seconds browsers and CDNs may keep a public frame's thumbnail (Cache-Control max-age)",
    ),
    Setting(
        "error_max_age",
        "THUMBPROXY_ERROR_MAX_AGE",
        _integer(0),
        lambda: 10,
        "Seconds browsers and CDNs may keep an error answer",
    ),
    Setting(
        "cors_origin",
        "THUMBPROXY_CORS_ORIGIN",
        _cors_origin,
        lambda: "*",
        "Access-Control-Allow-Origin of every answer: *, one origin, or empty for none",
    ),
    Setting(
        "latest_ttl",
        "THUMBPROXY_LATEST_TTL",
        _seconds,
        lambda: 30.0,
        "Seconds the newest frame matching a /latest/ query is reused before the archive is asked again",
    ),
    Setting(
        "max_pending",
        "THUMBPROXY_MAX_PENDING",
        _integer(0),
        lambda: 32,
        "Renders that may wait for a free worker; past it, requests needing a render get 503 at once",
    ),
    Setting(
        "request_timeout",
        "THUMBPROXY_REQUEST_TIMEOUT",
        _seconds,
        lambda: 60.0,
        "Seconds a request may take before it is answered 504 (its render still fills the cache)",
    ),
    Setting(
        "signing_keys",
        "THUMBPROXY_SIGNING_KEY",
        _signing_keys,
        lambda: (),
        "Comma-separated keys thumbnail URLs must be signed with (sig=); the first signs; empty: no signing",
        secret=True,
    ),
    Setting(
        "archive_retries",
        "THUMBPROXY_ARCHIVE_RETRIES",
        _integer(0, 10),
        lambda: 3,
        "Retries of an archive call that failed to connect or answered 502, 503 or 504",
    ),
    Setting(
        "metadata_stale_ttl",
        "THUMBPROXY_METADATA_STALE_TTL",
        _seconds,
        lambda: 3600.0,
        "Seconds past its time to live a public record is still used while the archive is failing",
    ),
    Setting(
        "ready_required",
        "THUMBPROXY_READY_REQUIRED",
        _readiness_checks,
        lambda: ("pool",),
        "Readiness checks (disk, pool, s3, archive, tmp) whose failure makes /readyz answer 503",
    ),
    Setting(
        "max_connections",
        "THUMBPROXY_MAX_CONNECTIONS",
        _integer(1, 1_000_000),
        lambda: 1000,
        "Client connections open at once; past it a new one replaces the one idle longest, or is refused "
        "(503) when every one has a request under way",
    ),
    Setting(
        "head_timeout",
        "THUMBPROXY_HEAD_TIMEOUT",
        _seconds,
        lambda: 5.0,
        "Seconds a client may take to send a request line and headers once it starts one; past it: 408",
    ),
    Setting(
        "drain_seconds",
        "THUMBPROXY_DRAIN_SECONDS",
        _seconds,
        lambda: 5.0,
        "Seconds after SIGTERM during which requests are still answered, each closing its connection, "
        "while /readyz answers 503",
    ),
    Setting(
        "shutdown_timeout",
        "THUMBPROXY_SHUTDOWN_TIMEOUT",
        _seconds,
        lambda: 30.0,
        "Seconds requests under way may take to finish after SIGTERM (and its drain) or SIGINT",
    ),
    Setting(
        "log_level",
        "THUMBPROXY_LOG_LEVEL",
        _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
        lambda: "INFO",
        "Logging level; INFO and below include one access-log line per request",
    ),
    Setting(
        "log_format",
        "THUMBPROXY_LOG_FORMAT",
        _one_of("text", "json"),
        lambda: "text",
        "Log lines as text or as JSON objects, one per line",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, validated; see SETTINGS for names and help."""

    archive_api_url: str
    archive_api_token: str = field(repr=False)
    tmp_dir: str
    aws_bucket: str
    aws_access_key_id: str
    aws_secret_access_key: str = field(repr=False)
    aws_default_region: str
    storage_url: str
    s3_prefix: str
    s3_addressing_style: str
    s3_timeout: float
    url_expiry: int
    required_frame_validation_keys: tuple[str, ...]
    valid_configuration_types: tuple[str, ...]
    valid_configuration_types_for_color_thumbs: tuple[str, ...]
    color_filters: tuple[tuple[str, ...], ...]
    host: str
    port: int
    cache_dir: str
    cache_size_mb: int
    memory_cache_mb: int
    open_files: int
    workers: int
    render_cpu_seconds: float
    render_memory_mb: int
    preview_size: int
    public_url: str
    allowed_hosts: tuple[str, ...]
    max_size: int
    max_fits_mb: int
    archive_max_answer_mb: int
    archive_connect_timeout: float
    archive_timeout: float
    download_timeout: float
    metadata_ttl: float
    private_metadata_ttl: float
    max_age: int
    error_max_age: int
    cors_origin: str
    latest_ttl: float
    max_pending: int
    request_timeout: float
    signing_keys: tuple[str, ...] = field(repr=False)
    archive_retries: int
    metadata_stale_ttl: float
    ready_required: tuple[str, ...]
    max_connections: int
    head_timeout: float
    drain_seconds: float
    shutdown_timeout: float
    log_level: str
    log_format: str


def _read_config_file(path: Path, required: bool) -> Mapping[str, Any]:
    try:
        with path.open("rb") as config_file:
            values = tomllib.load(config_file)
    except FileNotFoundError:
        if required:
            raise SettingsError(f"{CONFIG_ENV}: config file {path} does not exist") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"{CONFIG_ENV}: cannot read config file {path}: {error}") from None
    known = {setting.field for setting in SETTINGS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown setting {unknown[0]!r}")
    return values


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Settings from CLI values > environment > config file > defaults; SettingsError when invalid.

    The config file is `config_file`, else $THUMBPROXY_CONFIG, else config/thumbproxy.toml if present.
    """
    env = os.environ if env is None else env
    cli = {name: value for name, value in (cli or {}).items() if value is not None}
    explicit_file = config_file or env.get(CONFIG_ENV)
    from_file = _read_config_file(Path(explicit_file or DEFAULT_CONFIG_FILE), required=bool(explicit_file))
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        for source, name in ((cli, setting.field), (env, setting.env), (from_file, setting.field)):
            if name in source:
                try:
                    values[setting.field] = setting.parse(source[name])
                except ValueError as error:
                    given = "" if setting.secret else f" (got {source[name]!r})"
                    raise SettingsError(f"{setting.env}: {error}{given}") from None
                break
        else:
            values[setting.field] = setting.default()
    return Settings(**values)
