"""Fixtures for the integration tests.

The driver and csi-provider-call are real processes; grpcio (an independent
gRPC stack) plays kubelet and the provider plugins. Every fixture kills what
it started and removes its temporary directories, whatever the test did.

Environment:
  DRIVER_BIN         the driver binary (default .build/debug/secrets-store-csi-driver)
  PROVIDER_CALL_BIN  the provider client tool (default: csi-provider-call next to the driver)
  PROTOS_DIR         directory with csi.proto and provider.proto (default Protos/)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import support
from kubeapi_fixture import kube_api, kube_api_factory, kubeapi_tls_dir  # noqa: F401 (fixtures)
from support import (DriverProcess, ProviderCallProcess, compile_proto, driver_bin, mounting_env,
                     provider_call_bin, require_executable, short_tmpdir)


def _compile_or_fail(name: str):
    try:
        return compile_proto(name)
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def csi():
    """Generated csi.v1 modules: csi.pb2 (messages), csi.grpc (stubs)."""
    return _compile_or_fail("csi")


@pytest.fixture(scope="session")
def provider_proto():
    """Generated v1alpha1 provider modules."""
    return _compile_or_fail("provider")


@pytest.fixture(scope="session", autouse=True)
def _cleanup_generated():
    yield
    support.cleanup_compiled()


@pytest.fixture
def workdir():
    """A short temporary directory (unix socket paths must stay under 108 bytes)."""
    d = short_tmpdir()
    try:
        yield d
    finally:
        if os.environ.get("KEEP_WORKDIR"):
            print(f"work directory kept: {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def driver_path() -> Path:
    return require_executable(driver_bin(), "driver binary", "DRIVER_BIN")


@pytest.fixture(scope="session")
def provider_call_path() -> Path:
    return require_executable(provider_call_bin(), "csi-provider-call", "PROVIDER_CALL_BIN")


@pytest.fixture
def start_driver(driver_path, workdir, csi):
    """Factory: start_driver(*extra_args, endpoint=None, nodeid="test-node", ready=True).

    Starts the driver on a unix socket in workdir (or the given endpoint), by
    default waits until it answers Probe, and kills it at teardown. Unless the
    arguments name one, the kubelet root is workdir (--kubelet-root-dir), so
    valid targets are support.target_path(workdir, pod_uid, volume)."""
    procs: list[DriverProcess] = []

    def start(*args: str, endpoint: str | None = None, nodeid: str | None = "test-node",
              ready: bool = True) -> DriverProcess:
        ep = endpoint or f"unix://{workdir}/csi-{len(procs)}.sock"
        full = list(args)
        # A state directory per test, as a node has one: never the machine's /run default.
        if not any(a == "--state-dir" or a.startswith("--state-dir=") for a in full):
            full = ["--state-dir", str(workdir / "state"), *full]
        if not any(a == "--kubelet-root-dir" or a.startswith("--kubelet-root-dir=") for a in full):
            # Targets made with target_path(workdir, ...) lie under <workdir>/pods.
            full = ["--kubelet-root-dir", str(workdir), *full]
        if nodeid is not None:
            full = ["--nodeid", nodeid, *full]
        p = DriverProcess(driver_path, workdir, ep, full)
        procs.append(p)
        if ready:
            p.wait_ready(csi)
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.kill()


@pytest.fixture
def driver(start_driver) -> DriverProcess:
    """A driver running with default flags and --nodeid test-node."""
    return start_driver()


@pytest.fixture
def identity(driver, csi):
    return csi.grpc.IdentityStub(driver.channel())


@pytest.fixture
def node(driver, csi):
    return csi.grpc.NodeStub(driver.channel())


@pytest.fixture
def provider(workdir, provider_proto):
    """A grpcio provider on <workdir>/fake.sock, stopped at teardown."""
    from fake_provider import FakeProvider

    fp = FakeProvider(workdir / "fake.sock").start()
    try:
        yield fp
    finally:
        fp.stop()


@pytest.fixture
def provider_call(provider_call_path, workdir):
    """Factory: provider_call(endpoint, *extra_args) -> ProviderCallProcess, closed at teardown."""
    procs: list[ProviderCallProcess] = []

    def start(endpoint: str, *args: str) -> ProviderCallProcess:
        p = ProviderCallProcess(provider_call_path, workdir, endpoint, args)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.close()


class MountEnv:
    """A driver in standalone mode (--spc-dir) with a grpcio provider named
    "fake" in its provider directory, and a class "my-spc" using it."""

    def __init__(self, workdir: Path, start_driver, csi):
        from fake_provider import FakeProvider
        from mounting import write_spc

        self.root = workdir
        self.csi = csi
        self.providers = workdir / "providers"
        self.spcs = workdir / "spcs"
        self.providers.mkdir()
        self.spcs.mkdir()
        self.provider = FakeProvider(self.providers / "fake.sock").start()
        self._start_driver = start_driver
        self.driver = None
        write_spc(self.spcs, "my-spc", parameters={"objects": "secret.txt", "region": "eu-west-1"})

    def start(self, *args: str):
        self.driver = self._start_driver(
            "--provider-volume", str(self.providers), "--additional-provider-volume-paths", "",
            "--spc-dir", str(self.spcs), *args)
        return self.driver

    def node(self):
        return self.csi.grpc.NodeStub(self.driver.channel())

    def close(self) -> None:
        from mounting import unmount_everything_under

        self.provider.stop()
        unmount_everything_under(self.root)


@pytest.fixture
def mount_env(start_driver, workdir, csi, provider_proto):
    yield from mounting_env(lambda: MountEnv(workdir, start_driver, csi), MountEnv.close)
