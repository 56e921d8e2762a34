"""The console's static files, served from the package: console.css/js, the favicon, and plotly.js from
the `plotly` wheel (nothing comes from the internet). URLs carry a content hash, so the files are cached
for a year and a new version is a new URL.

plotly.js adds its own CSS as a `<style>` element, which the console's Content-Security-Policy
(`style-src 'self'`) forbids; plotly skips that when the page has an element with the id
`plotly.js-style-global` and the class `no-inline-styles`, so the same rules are served as a file,
`plotly.css`, extracted once from plotly.min.js (its table of rules, selector → declarations). The
bundled map library adds a `<style>` element of its own unless an element with its id exists: pages
carry an empty `<template>` with each such id (`style_guard_ids`); the console draws no maps.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

STATIC = Path(__file__).parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
# plotly's CSS rules: an object literal of "selector":"declarations" pairs that begins with "X,X div", then
# `for(k in rules) addStyleRule(k.replace(/^,/," ,").replace(/X/g,".js-plotly-plot .plotly")
# .replace(/Y/g,".plotly-notifier"), rules[k])`.
_STR = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_PAIR = re.compile(rf"({_STR})\s*:\s*({_STR})")
_RULES_START = '"X,X div":'
_STYLE_GUARD = re.compile(r'document\.getElementById\("([A-Za-z0-9_-]{1,128})"\)\)\{'
                          r'var \w+=document\.createElement\("style"\)')


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    digest: str


_lock = threading.Lock()
_cache: dict[str, Asset] = {}


def plotly_js() -> bytes:
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def plotly_css(js: str) -> str:
    """The CSS plotly.js would insert itself, as a stylesheet."""
    start = js.find(_RULES_START)
    if start < 0:
        return ""
    end = js.find("}", start)
    rules = []
    for key, value in _PAIR.findall(js[start:end]):
        selector = _unquote(key)
        if selector.startswith(","):
            selector = " ," + selector[1:]
        selector = selector.replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        rules.append(f"{selector}{{{_unquote(value)}}}")
    return "\n".join(rules) + "\n"


_guard_ids: list[str] | None = None


def style_guard_ids() -> list[str]:
    """Ids whose presence stops plotly.min.js from inserting a `<style>` element at load."""
    global _guard_ids
    if _guard_ids is None:
        _guard_ids = sorted(set(_STYLE_GUARD.findall(plotly_js().decode("utf-8", "replace"))))
    return _guard_ids


def _load(name: str) -> Asset | None:
    if name == "plotly.min.js":
        body = plotly_js()
    elif name == "plotly.css":
        body = plotly_css(plotly_js().decode("utf-8", "replace")).encode()
    else:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return None
        body = path.read_bytes()
    media = TYPES.get(Path(name).suffix)
    if media is None:
        return None
    return Asset(body, media, hashlib.sha256(body).hexdigest()[:16])


def get(name: str) -> Asset | None:
    with _lock:
        asset = _cache.get(name)
        if asset is None:
            asset = _load(name)
            if asset is not None:
                _cache[name] = asset
        return asset


def url(name: str) -> str:
    asset = get(name)
    return f"/console/static/{name}" + (f"?v={asset.digest}" if asset else "")
