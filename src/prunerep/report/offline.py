"""What an HTML page would fetch, and what it links to: the report's offline guarantee.

A page is *offline* when no element the browser loads by itself (scripts, stylesheets, images,
frames, media, fonts and imports inside CSS) points outside the machine. Links a reader clicks
(`<a href>`) may point anywhere: they fetch nothing until clicked. Local references (relative
URLs, of links too) must name files inside the report folder, so that the folder can be moved
or copied as a whole.

`external_requests` finds what would leave the machine, `strip_external` removes it (replacing
each element by a visible note), `local_references` lists the relative URLs to check on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

#: Attributes whose URL the browser fetches on its own, per tag.
REQUEST_ATTRS: dict[str, tuple[str, ...]] = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
    "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
    "base": ("href",),
}
#: Schemes that fetch nothing from a network.
LOCAL_SCHEMES = ("data", "about", "blob", "javascript", "mailto", "file")
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)['"]""", re.IGNORECASE)
_REFRESH = re.compile(r"url\s*=\s*['\"]?([^'\";]+)", re.IGNORECASE)


def is_external(url: str) -> bool:
    """True for a URL that names another machine (a scheme such as https:, or `//host/...`)."""
    url = url.strip()
    if url.startswith("//"):
        return True
    match = _SCHEME.match(url)
    return match is not None and match.group(1).lower() not in LOCAL_SCHEMES


def _srcset(value: str) -> list[str]:
    return [part.strip().split()[0] for part in value.split(",") if part.strip()]


def css_urls(css: str) -> list[str]:
    """Every URL a stylesheet loads (`url(...)` and `@import`)."""
    return [a or b for a, b in _CSS_URL.findall(css)]


@dataclass(frozen=True)
class Reference:
    """One URL of a page: the tag and attribute that hold it, and the URL as written."""

    tag: str
    attr: str
    url: str
    fetched: bool   # loaded by the browser on its own (False: a link the reader may click)

    def __str__(self) -> str:
        return f"<{self.tag} {self.attr}={self.url!r}>"


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[Reference] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v for k, v in attrs if v is not None}
        for attr in REQUEST_ATTRS.get(tag, ()):
            if attr in values:
                urls = _srcset(values[attr]) if attr == "srcset" else [values[attr]]
                self.refs += [Reference(tag, attr, u, True) for u in urls]
        if tag in ("a", "area") and "href" in values:
            self.refs.append(Reference(tag, "href", values["href"], False))
        if "style" in values:
            self.refs += [Reference(tag, "style", u, True) for u in css_urls(values["style"])]
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.refs += [Reference(tag, "content", u, True) for u in _REFRESH.findall(values.get("content", ""))]
        self._in = tag if tag in ("style", "script") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.refs += [Reference("style", "(text)", u, True) for u in css_urls(data)]
        elif self._in == "script":
            # a script that names a URL may fetch it (import(), fetch, XHR): count it as a request
            self.refs += [Reference("script", "(text)", u, True)
                          for u in re.findall(r"""(?:https?:)?//[^\s'"`)<>]+""", data)]


def references(html: str) -> list[Reference]:
    """Every URL of the page, in document order."""
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    return scanner.refs


def external_requests(html: str) -> list[Reference]:
    """What the page would fetch from another machine on load (empty for an offline page)."""
    return [r for r in references(html) if r.fetched and is_external(r.url)]


def local_references(html: str) -> list[Reference]:
    """Relative URLs of the page (fetched or linked), which must name files beside it."""
    out = []
    for ref in references(html):
        url = ref.url.strip()
        if not url or url.startswith("#") or is_external(url) or _SCHEME.match(url):
            continue
        out.append(ref)
    return out


def absolute_local_references(html: str) -> list[Reference]:
    """`file:` URLs and root-relative paths: they break when the report folder moves."""
    return [r for r in references(html)
            if r.url.strip().lower().startswith("file:") or
            (r.url.strip().startswith("/") and not r.url.strip().startswith("//"))]


def strip_external(html: str) -> tuple[str, list[str]]:
    """Remove every element that would fetch from another machine; returns the page and what went.

    Each removed element is replaced by a short visible note naming the URL, so a reader sees that
    something was left out rather than a silent gap. The page is returned unchanged (byte for
    byte) when there is nothing to remove.
    """
    if not external_requests(html):
        return html, []
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    removed: list[str] = []
    for tag in soup.find_all(True):
        if tag.decomposed:      # inside an element removed before
            continue
        bad = []
        for attr in REQUEST_ATTRS.get(tag.name, ()):
            value = tag.get(attr)
            if isinstance(value, str):
                urls = _srcset(value) if attr == "srcset" else [value]
                bad += [u for u in urls if is_external(u)]
        style = tag.get("style")
        if isinstance(style, str) and any(is_external(u) for u in css_urls(style)):
            del tag["style"]
            removed.append(f"<{tag.name} style> with {style!r}")
        if tag.name == "script" and not bad and external_requests(str(tag)):
            bad.append("(inline script naming a URL)")
        if tag.name == "meta" and any(r.fetched and is_external(r.url) for r in references(str(tag))):
            bad.append(str(tag.get("content")))
        if tag.name == "style" and any(is_external(u) for u in css_urls(tag.get_text())):
            bad.append("(stylesheet loading a URL)")
        if bad:
            removed.append(f"<{tag.name}> {', '.join(bad)}")
            if tag.name in ("img", "iframe", "video", "audio", "embed", "object"):
                note = soup.new_tag("span", attrs={"class": "prunerep-external"})
                note.string = f"[not embedded, would load from the internet: {bad[0]}]"
                tag.replace_with(note)
            else:
                tag.decompose()
    return str(soup), removed
