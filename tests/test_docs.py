"""The documentation stays true: README.rst, CHANGELOG.rst and docs/*.rst.

* every public name (``simplews.__all__`` and the ``__all__`` of each public
  submodule) is documented in docs/API.rst as a definition-list term, a
  heading or the first cell of a table row;
* every page renders with docutils without a warning (plain reStructuredText,
  no Sphinx roles or directives: GitHub and PyPI render it as it is);
* every ``.. code-block:: python`` snippet compiles: Python examples are
  written as such blocks and must be complete; fragments that are not valid
  Python on their own are written as plain ``::`` literal blocks. Snippets
  that build a server and close it (``server_close()``) are also run, with
  every server bound to 127.0.0.1 on a free port, and so is the sans-I/O
  example;
* the README's five-line server and five-line client run against each other
  over loopback.
"""

import importlib
import os
import re
import textwrap
import threading
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import pytest

import simplews

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
API = os.path.join(DOCS, "API.rst")
README = os.path.join(ROOT, "README.rst")

# The modules whose __all__ docs/API.rst documents, beyond the package itself.
PUBLIC_MODULES = [
    "simplews.exceptions", "simplews.connection", "simplews.server", "simplews.client",
    "simplews.selector", "simplews.deflate", "simplews.broker", "simplews.redis_broker",
    "simplews.workers", "simplews.protocol", "simplews.frames",
]

try:
    import docutils.core
    import docutils.nodes
    import docutils.utils
    from docutils.writers.null import Writer as NullWriter
except ImportError:  # pragma: no cover - docutils is in the test extra
    docutils = None  # type: ignore[assignment]

needs_docutils = pytest.mark.skipif(docutils is None, reason="docutils is not installed (pip install docutils; "
                                                             "it is in the test extra)")

# Render settings: halt on the first warning, print nothing, and no Pygments
# (highlighting does not change what is valid; without Pygments installed a
# highlighted code block would itself be a warning).
SETTINGS = {"halt_level": 2, "report_level": 5, "syntax_highlight": "none", "warning_stream": False,
            "file_insertion_enabled": False, "raw_enabled": False}

PYTHON_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. (?:code-block|code|sourcecode):: python[ \t]*$")


def rst_files() -> List[str]:
    names = [README, os.path.join(ROOT, "CHANGELOG.rst")]
    names += sorted(os.path.join(DOCS, name) for name in os.listdir(DOCS) if name.endswith(".rst"))
    return names


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def python_blocks(path: str) -> Iterator[Tuple[int, str]]:
    """(line number, dedented code) of every ``.. code-block:: python`` block in ``path``."""
    lines = read(path).splitlines()
    i = 0
    while i < len(lines):
        match = PYTHON_BLOCK.match(lines[i])
        if match is None:
            i += 1
            continue
        indent = len(match.group("indent").expandtabs())
        start = i + 1
        while start < len(lines) and lines[start].strip().startswith(":"):  # directive options
            start += 1
        end = start
        body = []  # type: List[str]
        while end < len(lines):
            line = lines[end]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
            end += 1
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        yield start + 1, code
        i = end


def all_python_blocks() -> List[Tuple[str, int, str]]:
    return [(os.path.relpath(path, ROOT), line, code) for path in rst_files() for line, code in python_blocks(path)]


def block_id(block: Tuple[str, int, str]) -> str:
    return "%s:%d" % (block[0], block[1])


# ---------------------------------------------------------------------- (a) API coverage

def public_names() -> List[Tuple[str, str]]:
    names = [("simplews", name) for name in simplews.__all__]
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [(module_name, name) for name in module.__all__]  # type: ignore[attr-defined]
    return names


def _leading_name(literal: str) -> str:
    """``simplews.connection.ConnectionState`` -> ``ConnectionState``; ``connect(uri, ...)`` -> ``connect``."""
    match = re.match(r"[\w.]+", literal.strip())
    if match is None:
        return ""
    return match.group(0).rstrip(".").rsplit(".", 1)[-1]


def documented_names_docutils(text: str) -> Set[str]:
    """Names in double backquotes inside terms, titles and first table cells of ``text``."""
    doctree = docutils.core.publish_doctree(text, settings_overrides=dict(SETTINGS, halt_level=5))
    find = getattr(doctree, "findall", None) or doctree.traverse
    containers = list(find(docutils.nodes.term)) + list(find(docutils.nodes.title))
    for row in find(docutils.nodes.row):
        if row.children:
            containers.append(row.children[0])
    names = set()
    for container in containers:
        finder = getattr(container, "findall", None) or container.traverse
        for literal in finder(docutils.nodes.literal):
            names.add(_leading_name(literal.astext()))
    return names


def documented_names_regex(text: str) -> Set[str]:
    """Without docutils: names in double backquotes at the start of a line (terms, table rows)."""
    names = set()
    for line in text.splitlines():
        stripped = line.strip()
        for literal in re.findall(r"``([^`]+)``", stripped):
            if stripped.startswith("``"):
                names.add(_leading_name(literal))
    return names


def test_every_public_name_is_in_the_api_reference() -> None:
    text = read(API)
    documented = documented_names_docutils(text) if docutils is not None else documented_names_regex(text)
    missing = ["%s.%s" % (module, name) for module, name in public_names() if name not in documented]
    assert not missing, ("public names not documented in docs/API.rst (as a term, heading or table row "
                         "in double backquotes): %s" % ", ".join(missing))


def test_api_reference_documents_every_option_default() -> None:
    text = read(API)
    for name, default in simplews.Options.DEFAULTS.items():
        row = re.search(r"^\s*``%s``\s+``([^`]+)``" % name, text, re.MULTILINE)
        assert row is not None, "option %s missing from the Options table" % name
        expected = '"%s"' % default if isinstance(default, str) else str(default)
        assert row.group(1) == expected, "docs/API.rst gives %s default %s, the code %r" % (
            name, row.group(1), default)


# ---------------------------------------------------------------------- (b) rendering

@needs_docutils
@pytest.mark.parametrize("path", rst_files(), ids=lambda path: os.path.relpath(path, ROOT))
def test_page_renders_without_warnings(path: str) -> None:
    try:
        docutils.core.publish_string(read(path), source_path=path, writer=NullWriter(),
                                     settings_overrides=SETTINGS)
    except docutils.utils.SystemMessage as exc:
        pytest.fail("%s does not render cleanly: %s" % (os.path.relpath(path, ROOT), exc))


@pytest.mark.parametrize("path", rst_files(), ids=lambda path: os.path.relpath(path, ROOT))
def test_no_sphinx_markup(path: str) -> None:
    text = read(path)
    roles = re.findall(r":(?:class|func|meth|mod|attr|data|exc|ref|doc):`", text)
    directives = re.findall(r"^\s*\.\. (?:auto\w+|toctree|py:\w+|versionadded|seealso)::", text, re.MULTILINE)
    assert not roles and not directives, "Sphinx-only markup in %s: %s" % (path, roles + directives)


def test_links_between_pages_point_to_existing_files() -> None:
    for path in rst_files():
        for target in re.findall(r"<([\w./-]+\.rst)>`_", read(path)):
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
            assert os.path.exists(resolved), "%s links to %s, which does not exist" % (
                os.path.relpath(path, ROOT), target)


# ---------------------------------------------------------------------- (c) snippets

@pytest.mark.parametrize("block", all_python_blocks(), ids=block_id)
def test_python_snippet_compiles(block: Tuple[str, int, str]) -> None:
    name, line, code = block
    compile(code, "%s:%d" % (name, line), "exec")


def test_every_page_with_python_has_snippets_found() -> None:
    """The extractor sees the blocks (a broken regex would make the compile test vacuous)."""
    found = {name for name, _, _ in all_python_blocks()}
    for page in ("README.rst", "docs/API.rst", "docs/MODES.rst", "docs/MIGRATING.rst", "docs/TLS.rst",
                 "docs/COMPRESSION.rst", "docs/ERRORS.rst"):
        assert page in found, "no python code block found in %s" % page


class _LoopbackServers(object):
    """Stands in for ``simplews.SimpleWSServer`` while a snippet runs: binds 127.0.0.1, port 0."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.created = []  # type: List[Any]
        self.ready = threading.Event()

    def __call__(self, handler: Any, host: Any = None, port: Any = None, *args: Any, **kwargs: Any) -> Any:
        server = self.real(handler, "127.0.0.1", 0, *args, **kwargs)
        self.created.append(server)
        self.ready.set()
        return server

    def close_all(self) -> None:
        for server in self.created:
            server.shutdown()


def _runnable(code: str) -> bool:
    return "server_close()" in code or "from simplews.protocol import" in code


@pytest.mark.parametrize("block", [b for b in all_python_blocks() if _runnable(b[2])], ids=block_id)
def test_self_contained_snippet_runs(block: Tuple[str, int, str], monkeypatch: Any) -> None:
    name, line, code = block
    servers = _LoopbackServers(simplews.SimpleWSServer)
    monkeypatch.setattr(simplews, "SimpleWSServer", servers)
    printed = []  # type: List[Tuple[Any, ...]]
    namespace = {"__name__": "snippet", "print": lambda *args, **kwargs: printed.append(args)}  # type: Dict[str, Any]
    try:
        exec(compile(code, "%s:%d" % (name, line), "exec"), namespace)
    finally:
        servers.close_all()
    if "from simplews.protocol import" in code:
        assert ("/chat",) in printed and (["hello"],) in printed
    else:
        assert servers.created, "the snippet at %s:%d created no server" % (name, line)


def _readme_block(marker: str) -> str:
    blocks = [code for _, code in python_blocks(README) if marker in code]
    assert blocks, "README.rst has no python block containing %r" % marker
    return blocks[0]


def test_readme_server_and_client_run_against_each_other(monkeypatch: Any) -> None:
    server_code = _readme_block("SimpleWSServer(")
    client_code = _readme_block("simplews.connect(")
    for code in (server_code, client_code):
        lines = [line for line in code.splitlines() if line.strip()]
        assert len(lines) <= 5, "the README promises five lines:\n" + code

    servers = _LoopbackServers(simplews.SimpleWSServer)
    monkeypatch.setattr(simplews, "SimpleWSServer", servers)
    errors = []  # type: List[BaseException]

    def run_server() -> None:
        try:
            exec(compile(server_code, "README.rst (server)", "exec"), {"__name__": "readme_server"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            servers.ready.set()

    thread = threading.Thread(target=run_server, name="readme-server", daemon=True)
    thread.start()
    try:
        assert servers.ready.wait(30), "the README server was not created"
        assert not errors, errors
        server = servers.created[0]
        url = "ws://127.0.0.1:8765/"
        assert url in client_code, "the README client no longer connects to %s" % url
        printed = []  # type: List[Tuple[Any, ...]]
        exec(compile(client_code.replace(url, server.url), "README.rst (client)", "exec"),
             {"__name__": "readme_client", "print": lambda *args, **kwargs: printed.append(args)})
        assert printed == [("hello",)]
    finally:
        servers.close_all()
        thread.join(30)
    assert not thread.is_alive()
    assert not errors, errors
