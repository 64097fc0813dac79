"""The example config file and the ACS quickstart stay true to the code.

- `examples/settings.toml` loads, names only real settings (its commented-out lines too,
  which must load as well once uncommented), names every setting, and keeps secrets out.
- `docs/connect-acs.md` mentions only real setting names and only routes the app serves,
  and puts the callback secret in the query parameter that `/acs/events` checks.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from models.settings import FIELDS, env_name, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "settings.toml"
GUIDE = ROOT / "docs" / "connect-acs.md"
CONTROL_PLANE = ROOT / "pipeline" / "api" / "acs_webhooks.py"

# "# key = value" lines: a default or an alternative, to uncomment.
COMMENTED_SETTING = re.compile(r"^#[ \t]?([a-z][a-z0-9_]*)[ \t]*=(.*)$", re.MULTILINE)
SECRETS = (
    "acs_key",
    "acs_connection_string",
    "api_tokens",
    "callback_secret",
    "speech_key",
    "openai_api_key",
    "azure_openai_api_key",
    "metrics_token",
    "pseudonym_key",
)
SETTING_NAME = re.compile(r"\b(?:CALLSTREAM|OPENAI|AZURE_OPENAI)_[A-Z0-9_]*[A-Z0-9]")
# URLs of callstream itself in the guide: the tunnel's placeholder, the variable, loopback.
SERVICE_URL = re.compile(
    r"(?:(?:https?|wss?)://(?:<public-host>|127\.0\.0\.1:8080|localhost:8080)"
    r"|\$\{?CALLSTREAM_PUBLIC_URL\}?)(/[^\s`'\"?#)]*)"
)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"\{[^}/]*\}|<[^>/]*>")


def _example() -> dict:
    with open(EXAMPLE, "rb") as fh:
        return tomllib.load(fh)


def _commented() -> dict[str, str]:
    found = COMMENTED_SETTING.findall(EXAMPLE.read_text())
    return {key: value for key, value in found}


def test_example_loads_with_its_important_values() -> None:
    settings = load_settings(environ={}, config_file=EXAMPLE)
    assert settings.public_url and settings.public_url.startswith("https://")
    assert settings.stt == "azure"
    assert settings.acs_audience
    assert settings.media_auth == "acs-jwt"
    assert settings.insecure is False


def test_example_keys_are_settings() -> None:
    unknown = sorted(set(_example()) - set(FIELDS))
    assert not unknown, f"not settings (models/settings.py FIELDS): {unknown}"


def test_example_commented_lines_are_settings_and_load(tmp_path: Path) -> None:
    commented = _commented()
    assert commented, "expected commented-out defaults and alternatives"
    unknown = sorted(set(commented) - set(FIELDS))
    assert not unknown, f"commented-out keys that are not settings: {unknown}"
    twice = sorted(set(commented) & set(_example()))
    assert not twice, f"set and also commented out (uncommenting would repeat a key): {twice}"
    # Uncommented, every line must still be valid TOML of the right type for its setting.
    text = COMMENTED_SETTING.sub(lambda m: f"{m.group(1)} ={m.group(2)}", EXAMPLE.read_text())
    uncommented = tmp_path / "uncommented.toml"
    uncommented.write_text(text)
    settings = load_settings(environ={}, config_file=uncommented)
    for key in commented:
        assert getattr(settings, key) is not None, key


def test_example_names_every_setting() -> None:
    named = set(_example()) | set(_commented())
    missing = sorted(set(FIELDS) - named)
    assert not missing, (
        f"examples/settings.toml does not name {missing}: add each, set or commented out"
    )


def test_example_keeps_secrets_out() -> None:
    present = sorted(set(SECRETS) & set(_example()))
    assert not present, f"secrets belong in the environment, not the example: {present}"


def _guide_without_fences() -> str:
    return FENCE.sub("", GUIDE.read_text())


def test_guide_setting_names_are_settings() -> None:
    names = set(SETTING_NAME.findall(GUIDE.read_text()))
    for needed in ("CALLSTREAM_ACS_AUDIENCE", "CALLSTREAM_PUBLIC_URL", "CALLSTREAM_API_TOKENS"):
        assert needed in names, needed
    known = {env_name(field) for field in FIELDS}
    unknown = sorted(names - known)
    assert not unknown, f"docs/connect-acs.md names settings that do not exist: {unknown}"


def _routes() -> list[tuple[str, re.Pattern[str]]]:
    """Every path the app mounts, from the route table `create_app` mounts."""
    from pipeline.api.routes import ROUTES
    from pipeline.api.spec import Operation

    templates = [entry.path for entry in ROUTES]
    templates += [
        path for entry in ROUTES if isinstance(entry, Operation) for path in entry.also_at
    ]
    routes = []
    for template in templates:
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        routes.append((template, re.compile(pattern + r"\Z")))
    return routes


def _guide_paths() -> set[str]:
    text = GUIDE.read_text()
    paths = set(SERVICE_URL.findall(text))
    for span in CODE_SPAN.findall(_guide_without_fences()):
        for word in span.split():
            if word.startswith("/"):
                paths.add(re.split(r"[?#]", word, maxsplit=1)[0])
    return {p.rstrip(".,;:") for p in paths if p not in ("", "/")}


def test_guide_paths_are_routes() -> None:
    routes = _routes()
    assert "/acs/events" in {template for template, _ in routes}
    paths = _guide_paths()
    for needed in ("/acs/events", "/media", "/readyz", "/console"):
        assert needed in paths, needed
    unknown = sorted(
        path for path in paths if not any(rx.match(PLACEHOLDER.sub("x", path)) for _, rx in routes)
    )
    assert not unknown, f"docs/connect-acs.md mentions paths the app does not serve: {unknown}"


def test_guide_secret_is_the_parameter_acs_events_checks() -> None:
    checked = re.findall(r"query_params\.get\(\"(\w+)\"\)", CONTROL_PLANE.read_text())
    assert checked, "where does pipeline/api/acs_webhooks.py read the callback secret?"
    text = GUIDE.read_text()
    for name in checked:
        assert f"/acs/events?{name}=" in text
    assert "/acs/events?" in text
    used = set(re.findall(r"/acs/events\?(\w+)=", text))
    assert used <= set(checked), f"the guide's query parameter(s) {used} vs the code's {checked}"
