"""What the page loads: the config script (`/viz/{sid}.js`) and the domain bundles (`/b/…`).

The tracker build (``tracker/dist``: minified modules + ``manifest.json``) is read once at
start. A bundle's version is a hash of the build and the site's config version, so changing
either gives new, immutable URLs; the config script that points at them is cached briefly.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAVOURS = ("legacy", "modern")
# Modules a feature switches on; modern bundles add recs for browsers with ES2017 syntax.
_FEATURE_OF = {"cmp.min.js": "cmp", "collect.min.js": "collect", "recs.min.js": "recs"}


class TrackerBuildMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Rendered:
    body: bytes
    gzipped: bytes


def _render(body: bytes) -> Rendered:
    return Rendered(body, gzip.compress(body, compresslevel=9, mtime=0))


class TrackerBuild:
    """The minified modules of one tracker build, by file name."""

    def __init__(self, build: str, files: Mapping[str, bytes], bundles: Mapping[str, list[str]]):
        self.build = build
        self.files = dict(files)
        self.bundles = {k: list(v) for k, v in bundles.items()}

    @classmethod
    def load(cls, directory: Path) -> TrackerBuild:
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            raise TrackerBuildMissing(
                f"no tracker build in {directory}: run `make setup` (npm --prefix tracker run "
                "build) or point VIZ_CONFIG_TRACKER_DIR at a build")
        manifest = json.loads(manifest_path.read_text())
        files = {name: (directory / name).read_bytes() for name in manifest["files"]}
        for name, meta in manifest["files"].items():
            if hashlib.sha256(files[name]).hexdigest() != meta["sha256"]:
                raise TrackerBuildMissing(f"{directory / name} does not match manifest.json")
        return cls(str(manifest["build"]), files, manifest["bundles"])

    def bundle_version(self, site_version: int) -> str:
        return hashlib.sha256(f"{self.build}:{site_version}".encode()).hexdigest()[:16]

    def bundle(self, flavour: str, features: Mapping[str, bool]) -> Rendered:
        """The modules of a flavour whose feature is on, joined by newlines, in manifest order."""
        names = [n for n in self.bundles[flavour] if features.get(_FEATURE_OF.get(n, ""), False)]
        return _render(b"\n".join(self.files[n] for n in names) + b"\n")


def _script_json(value: Any) -> str:
    """JSON safe inside a script: no `</script>`, no line separators JavaScript rejects."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def public_config(*, sid: str, tid: str, site_version: int, features: Mapping[str, bool],
                  cmp_config: Mapping[str, Any], recs_config: Mapping[str, Any],
                  tenant_domains: Iterable[str], urls: Mapping[str, str],
                  build: TrackerBuild) -> dict[str, Any]:
    """``window.__VIZ_CFG``: public values only (a test asserts the secret never appears)."""
    version = build.bundle_version(site_version)
    base = f"{urls['config']}/b/{version}/{sid}"
    return {
        "sid": sid, "tid": tid, "version": version, "urls": dict(urls),
        "features": {k: bool(features.get(k, False)) for k in ("collect", "cmp", "recs")},
        "cmp_config": dict(cmp_config), "recs_config": dict(recs_config),
        "tenant_domains": sorted(set(tenant_domains)),
        "bundle": {"legacy": f"{base}.js", "modern": f"{base}.modern.js"},
    }


def config_script(cfg: Mapping[str, Any], build: TrackerBuild) -> Rendered:
    body = f"window.__VIZ_CFG={_script_json(cfg)};\n".encode() + build.files["viz.min.js"]
    return _render(body)
