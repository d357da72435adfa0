"""HDF5 files of a proposal read for a caller, answered as h5grove 4 answers (`/meta`, `/attr`, `/paths`).

The file is the one the catalogue's rule lets the caller read (DataBrowser.open_readable_in: the real
path inside the proposal's folder, the kernel's ACL check as the caller, on every request; only the
proposal's row may be a second or two old, see recent_proposal), found and checked by one walk of
descriptors that ends in the file's own, which HDF5 then reopens, or whose inode names a file kept open
a few seconds for the next requests (handles.py): what was checked is what is read.
beamhub reads as root, so nothing in the file may make it read another file: external links are reported,
never followed; a virtual dataset or one with external raw storage is described but its values are refused
(they name files the caller's ACLs never saw).
Soft links are followed inside the file, by the same walk, never through an external link.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import h5py
from h5grove.utils import attr_metadata, get_filters, get_type_metadata, sorted_dict
from h5py import h5d, h5g, h5i, h5l, h5o, h5t

from beamhub.data.browsing.service import DataBrowser
from beamhub.data.h5.handles import OpenFiles
from beamhub.data.h5.values import Body, encode_values, statistics
from beamhub.errors import Forbidden, Invalid, NotFound
from beamhub.identity.principal import Principal

_ONE_EACH: weakref.WeakKeyDictionary[DataBrowser, H5Files] = weakref.WeakKeyDictionary()
_ONE_EACH_LOCK = threading.Lock()
Entity = h5py.Group | h5py.Dataset | h5py.Datatype | h5py.SoftLink | h5py.ExternalLink
Node = h5g.GroupID | h5d.DatasetID | h5t.TypeID | h5py.SoftLink | h5py.ExternalLink
MAX_SOFT_LINKS = 40
LINK_RESOLUTIONS = ("only_valid", "all", "none")


def locate(h5: h5py.File, path: str, resolve: str = "only_valid") -> Entity:
    """The object at `path`; a soft link's target unless `resolve` is "none" (or it dangles and is "only_valid")."""
    if resolve not in LINK_RESOLUTIONS:
        raise Invalid("resolve_links must be one of %(link_resolutions)s", link_resolutions=', '.join(LINK_RESOLUTIONS))
    parts = _parts(path)
    node = _hard_path(h5, parts)
    return _entity(node if node is not None else _walk(h5, _root(h5), parts, path, resolve, [0]))


def _hard_path(h5: h5py.File, parts: list[str]) -> Node | None:
    """The object at `parts` if each link on the way is a hard link (one library call a link, then one open): each
    link's kind is asked by its path from the root, so HDF5 crosses only links already found hard; None at the first
    that is not, or is missing (then _walk decides, link by link)."""
    path = b""
    for name in parts:
        path += b"/" + name.encode()
        try:
            if h5.id.links.get_info(path).type != h5l.TYPE_HARD:
                return None
        except (KeyError, ValueError, RuntimeError):
            return None
    return h5o.open(h5.id, path or b"/")


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _root(h5: h5py.File) -> h5g.GroupID:
    return h5o.open(h5.id, b"/")


def _entity(node: Node) -> Entity:
    """h5py's object for what a walk reached (a link is returned as it is)."""
    if isinstance(node, h5py.SoftLink | h5py.ExternalLink):
        return node
    kind = h5i.get_type(node)
    if kind == h5i.GROUP:
        return h5py.Group(node)
    if kind == h5i.DATASET:
        return h5py.Dataset(node)
    return h5py.Datatype(node)


def _walk(h5: h5py.File, node: Node, parts: list[str], path: str, resolve: str, hops: list[int]) -> Node:
    """Follow `parts` from `node` link by link (on h5py's low-level ids: a step is two library calls): hard links
    opened, soft links walked from their target, external links never crossed (the last one is returned as it is)."""
    for index, name in enumerate(parts):
        last = index == len(parts) - 1
        key = name.encode()
        kind = _link_kind(node, key)
        if kind is None:
            raise NotFound("%(path)s is not a valid path in this file", path=path)
        if kind == h5l.TYPE_EXTERNAL:
            if last and resolve != "all":
                filename, target = node.links.get_val(key)  # type: ignore[union-attr]
                return h5py.ExternalLink(os.fsdecode(filename), _decode(target))
            raise NotFound("Cannot resolve %(path)s: external links are not followed", path=path)
        if kind == h5l.TYPE_SOFT:
            link = h5py.SoftLink(_decode(node.links.get_val(key)))  # type: ignore[union-attr]
            if last and resolve == "none":
                return link
            node = _soft_target(h5, node, link, path, resolve if last else "all", hops)
            if isinstance(node, h5py.SoftLink):
                return link
            continue
        node = h5o.open(node, key)
    return node


def _link_kind(node: Node, key: bytes) -> int | None:
    """The kind of the link `key` of a group (hard, soft, external); None if there is none or `node` is no group."""
    if not isinstance(node, h5g.GroupID):
        return None
    try:
        kind = node.links.get_info(key).type
    except (KeyError, RuntimeError):  # no such link (h5py raises either, by HDF5 version)
        return None
    return kind if kind in (h5l.TYPE_HARD, h5l.TYPE_SOFT, h5l.TYPE_EXTERNAL) else None


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def _soft_target(h5: h5py.File, group: Node, link: h5py.SoftLink, path: str, resolve: str,
                 hops: list[int]) -> Node:
    """What a soft link names, walked from the root or from its group; the link itself if it dangles and may."""
    hops[0] += 1
    if hops[0] > MAX_SOFT_LINKS:
        raise NotFound("Cannot resolve %(path)s: too many soft links", path=path)
    start = _root(h5) if link.path.startswith("/") else group
    try:
        return _walk(h5, start, _parts(link.path), path, "all", hops)
    except NotFound:
        if resolve == "only_valid":
            return link
        raise


def metadata(h5: h5py.File, entity: Entity, name: str, depth: int = 1) -> dict[str, Any]:
    """h5grove's /meta of one entity: a group lists its children (their own metadata, one level deep)."""
    base = {"name": name}
    if isinstance(entity, h5py.ExternalLink):
        return sorted_dict(("target_file", entity.filename), ("target_path", entity.path), *base.items(),
                           ("kind", "external_link"))
    if isinstance(entity, h5py.SoftLink):
        return sorted_dict(("target_path", entity.path), *base.items(), ("kind", "soft_link"))
    fields = [*base.items(), ("attributes", [attr_metadata(entity.attrs, key) for key in sorted(entity.attrs)])]
    if isinstance(entity, h5py.Dataset):
        fields += [("kind", "dataset"), ("chunks", entity.chunks), ("filters", get_filters(entity)),
                   ("shape", entity.shape), ("type", get_type_metadata(entity.id.get_type()))]
    elif isinstance(entity, h5py.Datatype):
        fields += [("kind", "datatype"), ("type", get_type_metadata(entity.id))]
    else:
        fields.append(("kind", "group"))
        if depth > 0:
            fields.append(("children", [metadata(h5, _entity(_walk(h5, entity.id, [child], child, "only_valid", [0])),
                                                 child, 0) for child in entity]))
    return sorted_dict(*fields)


def attributes(entity: Entity, keys: list[str] | None) -> dict[str, Any]:
    """The values of an object's attributes, all or those named."""
    if isinstance(entity, h5py.SoftLink | h5py.ExternalLink):
        raise Invalid("a link that is not resolved has no attributes")
    missing = [key for key in keys or () if key not in entity.attrs]
    if missing:
        raise NotFound("no attribute %(missing)s", missing=', '.join(missing))
    return {key: entity.attrs[key] for key in (keys if keys is not None else entity.attrs)}


def link_paths(group: Entity, base: str) -> list[str]:
    """`base` and the path of every link below it, as h5grove's /paths (links listed, none followed)."""
    if not isinstance(group, h5py.Group):
        raise Invalid("%(base)s is not a group", base=base)
    prefix = base.rstrip("/")
    names = [base]
    group.id.links.visit(lambda name: names.append(f"{prefix}/{name.decode()}"))
    return names


def readable_dataset(entity: Entity, path: str) -> h5py.Dataset:
    """The dataset at `path` if its values lie in this file."""
    if not isinstance(entity, h5py.Dataset):
        raise Invalid("%(path)s is not a dataset", path=path)
    if entity.is_virtual or entity.external:
        raise Forbidden("%(path)s keeps its values in other files (virtual or external storage): beamhub reads only "
                        "the file asked for", path=path)
    return entity


class H5Files:
    """HDF5 files of a proposal, opened for a caller only when the file's ACL lets them read it."""

    def __init__(self, browse: DataBrowser, files: OpenFiles | None = None) -> None:
        self.browse = browse
        self.files = files or OpenFiles()

    @classmethod
    def of(cls, browse: DataBrowser) -> H5Files:
        """The one H5Files of a DataBrowser (of an app), whose kept files its requests share."""
        with _ONE_EACH_LOCK:
            if browse not in _ONE_EACH:
                _ONE_EACH[browse] = cls(browse, OpenFiles(browse.data.settings.h5_keep_seconds))
            return _ONE_EACH[browse]

    @contextmanager
    def open(self, principal: Principal, proposal_id: str, file: str) -> Iterator[h5py.File]:
        """The proposal's file `file` (relative to the proposal's folder) as HDF5, if the caller may read it."""
        proposal = self.browse.recent_proposal(principal, proposal_id)
        with self.files.use(self.browse.open_readable_in(principal, proposal, file), file) as h5:
            yield h5

    def meta(self, principal: Principal, proposal_id: str, file: str, path: str, resolve: str) -> dict[str, Any]:
        """h5grove's /meta of `path`."""
        with self.open(principal, proposal_id, file) as h5:
            return metadata(h5, locate(h5, path, resolve), _name(path))

    def attr(self, principal: Principal, proposal_id: str, file: str, path: str,
             keys: list[str] | None) -> dict[str, Any]:
        """h5grove's /attr of `path`: attribute values by name."""
        with self.open(principal, proposal_id, file) as h5:
            return attributes(locate(h5, path), keys)

    def paths(self, principal: Principal, proposal_id: str, file: str, path: str, resolve: str) -> list[str]:
        """h5grove's /paths below `path`."""
        with self.open(principal, proposal_id, file) as h5:
            return link_paths(locate(h5, path, resolve), path)

    def data(self, principal: Principal, proposal_id: str, file: str, path: str, selection: str | None, fmt: str,
             dtype: str, flatten: bool) -> Body:
        """h5grove's /data of the dataset at `path`; a streamed body keeps the file open until it is sent."""
        stack = ExitStack()
        try:
            h5 = stack.enter_context(self.open(principal, proposal_id, file))
            body = encode_values(readable_dataset(locate(h5, path), path), selection, fmt, dtype, flatten)
        except BaseException:
            stack.close()
            raise
        if not isinstance(body.content, Iterator):
            stack.close()
        else:
            body.content = _closing(body.content, stack)
        return body

    def stats(self, principal: Principal, proposal_id: str, file: str, path: str,
              selection: str | None) -> dict[str, int | float | None]:
        """h5grove's /stats of the selection of the dataset at `path`."""
        with self.open(principal, proposal_id, file) as h5:
            return statistics(readable_dataset(locate(h5, path), path), selection)


def _closing(chunks: Iterator[bytes], stack: ExitStack) -> Iterator[bytes]:
    """The chunks, then (or when the reader stops early) the file closed."""
    with stack:
        yield from chunks


def _name(path: str) -> str:
    """An entity's name as h5grove gives it: the last component of the path ("" for the root)."""
    return path.split("/")[-1]
