"""Small, offline intersphinx inventories for the projects skberdiff's docs link to.

The docs build never downloads anything: ``conf.py`` compiles the plain-text lists in this
folder (``<key>.txt``) into Sphinx ``objects.inv`` files under ``docs/_build/_inventories``
and points ``intersphinx_mapping`` at those local files. Each list holds only the objects
that skberdiff's docs and docstrings refer to, with the same relative URI as in the
project's published inventory.

A list file looks like this::

    # project: scikit-learn
    # version: stable
    # url: https://scikit-learn.org/stable/
    sklearn.pipeline.Pipeline py:class modules/generated/sklearn.pipeline.Pipeline.html#$

One entry per line: ``name domain:role uri [display name]``. A URI ending in ``$`` stands
for the name (Sphinx's own shorthand); a missing display name means "same as the name".

Keeping the lists right
-----------------------
Add a line when the docs start to refer to a new outside object. To check every line
against a project's real inventory (when you have one: from the project's web site on a
machine with internet access, or from a distribution's documentation package), run::

    python docs/_inventories/inventories.py check sklearn path/or/url/to/objects.inv

It reports entries that are missing or whose URI differs. ``python
docs/_inventories/inventories.py compile OUTDIR`` writes the ``.inv`` files by hand.
"""

import posixpath
import sys
import urllib.request
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_list(path):
    """Parse one list file into ``(meta, entries)``.

    ``meta`` has ``project``, ``version`` and ``url``; ``entries`` is a list of
    ``(name, role, uri, display_name)`` tuples with ``$`` already expanded.
    """
    meta, entries = {}, []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() in ("project", "version", "url"):
                meta[key.strip()] = value.strip()
            continue
        parts = line.split(None, 3)
        if len(parts) < 3 or ":" not in parts[1]:
            raise ValueError(f"{path}:{number}: expected 'name domain:role uri [display]', "
                             f"got {raw!r}")
        name, role, uri = parts[:3]
        display = parts[3] if len(parts) == 4 else "-"
        if uri.endswith("$"):
            uri = uri[:-1] + name
        entries.append((name, role, uri, display))
    missing = {"project", "version", "url"} - set(meta)
    if missing:
        raise ValueError(f"{path}: header lines missing for {sorted(missing)}")
    return meta, entries


def write_inventory(meta, entries, path):
    """Write ``entries`` as a Sphinx inventory (version 2, zlib-compressed body)."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {meta['project']}\n"
        f"# Version: {meta['version']}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} {display}\n"
                   for name, role, uri, display in sorted(entries))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = header.encode("utf-8") + zlib.compress(body.encode("utf-8"), 9)
    # Rewrite only when the content changes, so repeated builds stay incremental.
    if not path.exists() or path.read_bytes() != payload:
        path.write_bytes(payload)
    return path


def compile_all(out_dir):
    """Compile every list in this folder; return ``{key: (url, inventory_path)}``."""
    mapping = {}
    for source in sorted(HERE.glob("*.txt")):
        meta, entries = read_list(source)
        target = write_inventory(meta, entries, Path(out_dir) / f"{source.stem}.inv")
        mapping[source.stem] = (meta["url"], str(target))
    return mapping


def _load_full_inventory(location):
    from sphinx.util.inventory import InventoryFile

    if "://" in location:
        with urllib.request.urlopen(location, timeout=30) as response:  # noqa: S310
            data = response.read()
    else:
        data = Path(location).read_bytes()
    import io

    inventory = InventoryFile.load(io.BytesIO(data), "", posixpath.join)
    return getattr(inventory, "data", inventory)


def check(key, location):
    """Compare the list ``key`` with a real inventory; return the number of problems."""
    _, entries = read_list(HERE / f"{key}.txt")
    full = _load_full_inventory(location)
    problems = 0
    for name, role, uri, _ in entries:
        item = full.get(role, {}).get(name)
        if item is None:
            print(f"MISSING  {role} {name}")
            problems += 1
            continue
        real_uri = item.uri if hasattr(item, "uri") else item[2]
        if real_uri.rstrip("/") != uri.rstrip("/"):
            print(f"URI      {role} {name}: list has {uri}, inventory has {real_uri}")
            problems += 1
    print(f"{key}: {len(entries)} entries checked, {problems} problem(s)")
    return problems


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "compile":
        for key, (url, path) in compile_all(argv[1]).items():
            print(f"{key}: {path} ({url})")
        return 0
    if len(argv) == 3 and argv[0] == "check":
        return 1 if check(argv[1], argv[2]) else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
