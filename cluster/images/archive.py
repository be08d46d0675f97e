"""Write a one-layer container image as a docker-archive (what `ctr images
import` and `podman load` read) from a directory tree, without a registry,
a daemon or a running container.

    python3 archive.py --tag registry.k8s.io/pause:3.10.1 --tree DIR --output pause.tar -- /pause

The layer is reproducible: entries sorted, owned by root, mtime 0.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile


def layer(tree: str, output) -> str:  # type: ignore[no-untyped-def]
    """Write the tree as an uncompressed tar to ``output``; return its sha256."""
    digest = hashlib.sha256()

    class Hashing(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:  # type: ignore[no-untyped-def]
            digest.update(data)
            output.write(data)
            return len(data)

    with tarfile.open(fileobj=Hashing(), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, names in os.walk(tree):
            dirs.sort()
            for name in sorted(dirs + names):
                path = os.path.join(top, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, tree))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True)
    parser.add_argument("--tree", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--cmd", action="append", default=[], help="the image's default arguments (repeat)")
    parser.add_argument("entrypoint", nargs="+")
    args = parser.parse_args()

    directory = os.path.dirname(os.path.abspath(args.output))
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as layer_file:
        diff_id = layer(args.tree, layer_file)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": args.entrypoint,
            "Cmd": args.cmd or None,
            "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
            "WorkingDir": args.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": f"cluster/images/archive.py {args.tag}"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": [f"{diff_id}/layer.tar"]}]
    temporary = args.output + ".tmp"
    try:
        with tarfile.open(temporary, "w") as tar:
            for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            tar.add(layer_file.name, arcname=f"{diff_id}/layer.tar")
        os.replace(temporary, args.output)
    finally:
        os.unlink(layer_file.name)
        if os.path.exists(temporary):
            os.unlink(temporary)


if __name__ == "__main__":
    main()
