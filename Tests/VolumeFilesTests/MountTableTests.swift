import Glibc
import Testing
import VolumeFiles

struct MountTableTests {
  @Test func parsesMountinfoLinesWithEscapesAndOptionalFields() {
    let text = """
      22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw
      812 29 0:88 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/my\\040vol/mount rw,nosuid,nodev,noexec shared:400 master:1 - tmpfs secrets-store.csi.k8s.io rw,size=8192k
      not a mountinfo line
      900 29 0:90 / /x\\134y rw - tmpfs a\\011b rw

      """
    #expect(
      MountTable.parse(Array(text.utf8)) == [
        MountEntry(id: 22, parentID: 1, mountPoint: "/proc", fsType: "proc", source: "proc"),
        MountEntry(
          id: 812, parentID: 29, mountPoint: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/my vol/mount", fsType: "tmpfs",
          source: "secrets-store.csi.k8s.io"),
        MountEntry(id: 900, parentID: 29, mountPoint: "/x\\y", fsType: "tmpfs", source: "a\tb"),
      ])
  }

  @Test(.enabled(if: canMount, "NOT RUN: mounts tmpfs, which needs root (run the tests as root)"))
  func aTmpfsShowsTheSourceItWasMountedWith() throws {
    let directory = try makeTempDirectory() + "/with space"
    #expect(mkdir(directory, 0o755) == 0)
    defer {
      rmdir(directory)
      rmdir(String(directory.dropLast("/with space".count)))
    }
    try Tmpfs.mount(at: directory, sizeBytes: 1 << 20, source: "secrets-store.csi.k8s.io")
    defer { try? Tmpfs.unmount(directory) }
    let found = try MountTable.read().filter { $0.mountPoint == directory }
    #expect(found.count == 1)
    #expect(found.first?.fsType == "tmpfs" && found.first?.source == "secrets-store.csi.k8s.io")
    #expect(try MountTable.read().first { $0.mountPoint == directory }?.id == found.first?.id)
  }
}
