"""GC follows DEL's rules (issue 9, item 2).

It takes each collected attachment's lock (an ADD in flight holds it, so that
attachment is left alone), removes the node end first and releases the
addresses only once it is gone; a delegated IPAM is asked to collect only
after the node ends are gone, and never what still has a node end.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

from cni_render.datapath.naming import host_ifname
from cni_render.ipam.store import record_key
from delegates import host_local, spy_plugin
from throwaway import Node, Pod, host_interface, pod_addresses, with_prev_result

VALID = "cni.dev/valid-attachments"


def gc_config(node: Node, attachments: list[Pod] | None, **overrides) -> dict:
    config = node.config(cniVersion="1.1.0", **overrides)
    if attachments is not None:
        config[VALID] = [{"containerID": pod.container_id, "ifname": pod.ifname} for pod in attachments]
    return config


def stripe(pod: Pod, network: str = "testnet") -> str:
    return host_ifname(network, pod.container_id, pod.ifname)[-2:]


@contextmanager
def add_in_flight(node: Node, pod: Pod) -> Iterator[None]:
    """Hold ``pod``'s attachment lock, as its ADD does while it runs."""
    locks = os.path.join(node.state_dir, "locks")
    os.makedirs(locks, exist_ok=True)
    fd = os.open(os.path.join(locks, f"attachment-{stripe(pod)}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pods_on_distinct_stripes(node: Node, count: int) -> list[Pod]:
    pods: list[Pod] = []
    while len(pods) < count:
        pod = node.add_pod()
        if stripe(pod) not in {stripe(p) for p in pods}:
            pods.append(pod)
    return pods


def test_gc_leaves_an_attachment_alone_while_its_add_runs(node):
    busy, stale = pods_on_distinct_stripes(node, 2)
    results = {pod.name: node.cni("ADD", node.config(cniVersion="1.1.0"), pod).ok().json for pod in (busy, stale)}
    with add_in_flight(node, busy):
        node.cni("GC", gc_config(node, [])).ok()
        assert node.allocations() == pod_addresses(results[busy.name])
        assert node.pod_links() == [host_interface(results[busy.name])["name"]]
    busy.serve_http()
    assert node.http_get(pod_addresses(results[busy.name])[0]) == "It works!\n"
    node.cni("GC", gc_config(node, [])).ok()  # the next GC collects it
    assert node.allocations() == [] and node.pod_links() == []


def test_gc_keeps_the_addresses_while_the_node_end_cannot_be_removed(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(cniVersion="1.1.0"), pod).ok()
    stuck = node.tmp / "stuck"
    stuck.mkdir()
    (stuck / "del-host.ip.j2").write_text("link set dev {{ host.ifname }} mtu 10\n")
    call = node.cni("GC", gc_config(node, [], templateDir=str(stuck)))
    assert call.exit_code == 1 and call.json["code"] == 100, call.stdout
    assert node.allocations() != [] and node.pod_links() != []
    node.cni("GC", gc_config(node, [])).ok()
    assert node.allocations() == [] and node.pod_links() == []


def test_a_delegated_ipam_never_collects_what_still_has_a_node_end(node):
    plugins, log = spy_plugin(node)
    extra = {"CNI_PATH": f"{plugins}:/usr/lib/cni"}
    ipam = host_local(node, plugin="spy-ipam")
    busy, stuck_pod, stale = pods_on_distinct_stripes(node, 3)
    for pod in (busy, stuck_pod, stale):
        node.cni("ADD", node.config(cniVersion="1.1.0", ipam=ipam), pod, extra_env=extra).ok()
    stuck = node.tmp / "stuck"
    stuck.mkdir()
    (stuck / "del-host.ip.j2").write_text(
        "{% if container_id == '" + stuck_pod.container_id + "' %}link set dev {{ host.ifname }} mtu 10"
        "{% else %}link del dev {{ host.ifname }}{% endif %}\n"
    )
    with add_in_flight(node, busy):
        call = node.cni("GC", gc_config(node, [], ipam=ipam, templateDir=str(stuck)), extra_env=extra)
    assert call.exit_code == 1 and call.json["code"] == 100, call.stdout
    gc_lines = [line.split(" ", 1)[1] for line in open(log).read().splitlines() if line.startswith("GC ")]
    assert len(gc_lines) == 1, "GC must still be forwarded"
    kept = {entry["containerID"] for entry in json.loads(gc_lines[0])[VALID]}
    assert kept == {busy.container_id, stuck_pod.container_id}
    assert len(node.pod_links()) == 2  # the stale one went


def test_gc_racing_adds_never_splits_an_attachment(node):
    """GC with an empty list, again and again, while pods are added: every
    attachment ends up whole (node end and addresses) or wholly collected."""
    config = node.config(cniVersion="1.1.0")
    pods = [node.add_pod() for _ in range(16)]
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            node.cni("GC", gc_config(node, []))

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            adds = list(pool.map(lambda pod: node.cni("ADD", config, pod, timeout=240), pods))
    finally:
        stop.set()
        collector.join()
    for call in adds:
        assert call.exit_code == 0 or call.json["code"] in (11,), call.stdout
    links = set(node.pod_links())
    owners = {}
    for address in node.allocations():
        content = open(f"{node.data_dir}/testnet/{address}", newline="").read()
        owners[address] = content.split("\r\n")[0]
    for pod in pods:
        link = host_ifname("testnet", pod.container_id, pod.ifname)
        held = [a for a, owner in owners.items() if owner == pod.container_id]
        assert (link in links) == bool(held), f"{pod.name}: link {link in links}, addresses {held}"


def test_a_stale_record_never_releases_a_live_pods_address(node):
    """Issue 13: a DEL killed between unlinking its owner files and rewriting
    its record leaves the record naming addresses a new pod then gets. The
    old sandbox's DEL, retried, and GC leave the new pod's addresses (it still
    answers) and remove the stale record."""
    config = node.config(cniVersion="1.1.0")
    old, new = node.add_pod(), node.add_pod()
    old_result = node.cni("ADD", config, old).ok().json
    record = os.path.join(node.data_dir, "testnet", ".attachments", record_key(old.container_id, old.ifname))
    stale = open(record).read()
    node.cni("DEL", config, old).ok()
    assert not os.path.exists(record)

    def crash_state() -> None:  # what the kill left: the record as it was
        with open(record, "w") as handle:
            handle.write(stale)

    crash_state()
    addresses = pod_addresses(old_result)
    new_result = node.cni("ADD", config, new, cni_args=f"IP={','.join(addresses)}").ok().json
    assert pod_addresses(new_result) == addresses
    crash_state()
    new.serve_http()
    node.cni("DEL", with_prev_result(config, old_result), old).ok()  # the runtime's retry
    assert node.allocations() == sorted(addresses) and not os.path.exists(record)
    assert node.http_get(addresses[0]) == "It works!\n"
    crash_state()
    node.cni("GC", gc_config(node, [new])).ok()
    assert node.allocations() == sorted(addresses) and not os.path.exists(record)
    assert node.http_get(addresses[0]) == "It works!\n"
