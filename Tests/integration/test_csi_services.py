"""CSI Identity and Node services as kubelet, node-driver-registrar and the
liveness probe call them."""

from __future__ import annotations

import grpc
from pathlib import Path
import pytest

from support import VOLUME_ID, target_path_for, valid_publish_request

T = 10  # per-call deadline, seconds


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kwargs)
    return ei.value


# ---- Identity


def test_get_plugin_info(identity, csi):
    r = identity.GetPluginInfo(csi.pb2.GetPluginInfoRequest(), timeout=T)
    assert r.name == "secrets-store.csi.k8s.io"
    assert r.vendor_version, "vendor_version is empty"


def test_get_plugin_capabilities_is_empty(identity, csi):
    r = identity.GetPluginCapabilities(csi.pb2.GetPluginCapabilitiesRequest(), timeout=T)
    assert list(r.capabilities) == []


def test_probe_is_ready(identity, csi):
    r = identity.Probe(csi.pb2.ProbeRequest(), timeout=T)
    assert r.HasField("ready"), "Probe must set ready explicitly"
    assert r.ready.value is True


# ---- Node: info and capabilities


def test_node_get_info(node, csi):
    r = node.NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=T)
    assert r.node_id == "test-node"


def test_node_get_info_other_nodeid(start_driver, csi):
    d = start_driver(nodeid="ip-10-0-0-1.ec2.internal")
    r = csi.grpc.NodeStub(d.channel()).NodeGetInfo(csi.pb2.NodeGetInfoRequest(), timeout=T)
    assert r.node_id == "ip-10-0-0-1.ec2.internal"


def test_node_get_capabilities_is_volume_mount_group_only(node, csi):
    r = node.NodeGetCapabilities(csi.pb2.NodeGetCapabilitiesRequest(), timeout=T)
    rpc = csi.pb2.NodeServiceCapability.RPC
    assert [c.rpc.type for c in r.capabilities] == [rpc.VOLUME_MOUNT_GROUP]


# ---- NodePublishVolume validation


@pytest.mark.parametrize("missing", ["volume_id", "target_path", "volume_capability"])
def test_publish_missing_field_is_invalid_argument(node, csi, workdir, missing):
    req = valid_publish_request(csi, workdir)
    req.ClearField(missing)
    e = rpc_error(node.NodePublishVolume, req, timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    assert missing in (e.details() or ""), f"details do not name {missing}: {e.details()!r}"


def test_publish_empty_request_is_invalid_argument(node, csi):
    e = rpc_error(node.NodePublishVolume, csi.pb2.NodePublishVolumeRequest(), timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_valid_publish_without_a_class_is_not_found(node, csi, workdir):
    """A well-formed request reaches the mount path, which looks up the class
    first: with no source configured, that is NOT_FOUND naming it, and nothing
    is created at the target."""
    req = valid_publish_request(csi, workdir)
    e = rpc_error(node.NodePublishVolume, req, timeout=T)
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
    assert "my-spc" in e.details() and "default" in e.details(), e.details()
    assert not Path(req.target_path).exists()


# ---- NodeUnpublishVolume validation


@pytest.mark.parametrize("missing", ["volume_id", "target_path"])
def test_unpublish_missing_field_is_invalid_argument(node, csi, workdir, missing):
    req = csi.pb2.NodeUnpublishVolumeRequest(volume_id=VOLUME_ID,
                                             target_path=target_path_for(workdir))
    req.ClearField(missing)
    e = rpc_error(node.NodeUnpublishVolume, req, timeout=T)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e


# ---- Not offered


def test_stage_unstage_stats_expand_are_unimplemented(node, csi, workdir):
    pb = csi.pb2
    cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(),
                              access_mode=pb.VolumeCapability.AccessMode(
                                  mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
    staging = str(workdir / "staging")
    calls = [
        (node.NodeStageVolume, pb.NodeStageVolumeRequest(
            volume_id=VOLUME_ID, staging_target_path=staging, volume_capability=cap)),
        (node.NodeUnstageVolume, pb.NodeUnstageVolumeRequest(
            volume_id=VOLUME_ID, staging_target_path=staging)),
        (node.NodeGetVolumeStats, pb.NodeGetVolumeStatsRequest(
            volume_id=VOLUME_ID, volume_path=target_path_for(workdir))),
        (node.NodeExpandVolume, pb.NodeExpandVolumeRequest(
            volume_id=VOLUME_ID, volume_path=target_path_for(workdir))),
    ]
    for fn, req in calls:
        e = rpc_error(fn, req, timeout=T)
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (fn, e)


@pytest.mark.parametrize("method", [
    "/csi.v1.Controller/CreateVolume",
    "/csi.v1.Controller/ControllerGetCapabilities",
    "/csi.v1.Node/NoSuchMethod",
    "/no.such.Service/Method",
])
def test_unknown_method_is_unimplemented(driver, method):
    call = driver.channel().unary_unary(method)  # raw bytes in, raw bytes out
    e = rpc_error(call, b"", timeout=T)
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
