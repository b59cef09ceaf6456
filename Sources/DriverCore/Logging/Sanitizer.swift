import CSIMessages

/// Renders CSI and provider messages for logs by an allowlist: each message
/// type this driver handles names the fields that may be printed; everything
/// else is left out or shown only by its shape (a count, a size, a key).
///
/// - Printed: volume_id, target_path, staging_target_path, readonly, the
///   volume capability (access mode, access type, fs_type), the values of the
///   volume_context keys in ``PodVolume/safeContextKeys`` (class, pod name,
///   namespace and uid, service account name, ephemeral), provider target_path
///   and permission.
/// - Keys only: any other volume_context key (pod authors choose them; their
///   values may be credentials), publish_context.
/// - Never: the `secrets` map (only its size), service-account tokens, the
///   provider `attributes` and `secrets` JSON (only their size), file paths,
///   contents, object versions and error codes from a provider (counts only),
///   mount flags (count only).
/// - A message type not listed here prints its type name and nothing else, so a
///   new message or field stays out of the log until someone decides it is safe.
///
/// Printed strings are bounded and have control characters replaced.
public enum Sanitizer {
  public static let redacted = SecretScrubber.marker

  /// A one-line rendering of `value` that holds only allowlisted fields.
  public static func render(_ value: Any) -> String {
    switch value {
    case let m as CSI.NodePublishVolumeRequest:
      var fields = [
        ("volume_id", quote(m.volumeID)), ("target_path", quote(m.targetPath)),
      ]
      if !m.stagingTargetPath.isEmpty { fields.append(("staging_target_path", quote(m.stagingTargetPath))) }
      fields += [
        ("readonly", "\(m.readonly)"),
        ("volume_capability", m.volumeCapability.map(capability) ?? "nil"),
        ("volume_context", context(m.volumeContext)),
        ("secrets", count(m.secrets.count)),
      ]
      if !m.publishContext.isEmpty { fields.append(("publish_context", keysOnly(m.publishContext))) }
      return message(m, fields)
    case let m as CSI.NodeUnpublishVolumeRequest:
      return message(m, [("volume_id", quote(m.volumeID)), ("target_path", quote(m.targetPath))])
    case let m as CSI.NodeStageVolumeRequest:
      return message(m, [("volume_id", quote(m.volumeID)), ("staging_target_path", quote(m.stagingTargetPath))])
    case let m as CSI.NodeUnstageVolumeRequest:
      return message(m, [("volume_id", quote(m.volumeID)), ("staging_target_path", quote(m.stagingTargetPath))])
    case let m as CSI.NodeGetVolumeStatsRequest:
      return message(m, [("volume_id", quote(m.volumeID)), ("volume_path", quote(m.volumePath))])
    case let m as CSI.NodeExpandVolumeRequest:
      return message(m, [("volume_id", quote(m.volumeID)), ("volume_path", quote(m.volumePath))])
    case let m as CSI.ProbeResponse:
      return message(m, [("ready", m.ready.map { "\($0)" } ?? "nil")])
    case let m as CSI.GetPluginInfoResponse:
      return message(m, [("name", quote(m.name)), ("vendor_version", quote(m.vendorVersion))])
    case let m as Provider.MountRequest:
      return message(
        m,
        [
          ("attributes", size(m.attributes.utf8.count)), ("secrets", size(m.secrets.utf8.count)),
          ("target_path", quote(m.targetPath)), ("permission", quote(m.permission)),
          ("current_object_version", entries(m.currentObjectVersion.count)),
        ])
    case let m as Provider.MountResponse:
      return message(
        m,
        [
          ("object_version", entries(m.objectVersion.count)),
          ("files", "<\(m.files.count) files, \(m.files.reduce(0) { $0 + $1.contents.count }) bytes \(redacted)>"),
          ("error", m.error == nil ? "nil" : "<\(redacted)>"),
        ])
    case let m as Provider.VersionRequest:
      return message(m, [("version", quote(m.version))])
    case let m as Provider.VersionResponse:
      return message(
        m, [("version", quote(m.version)), ("runtime_name", quote(m.runtimeName)), ("runtime_version", quote(m.runtimeVersion))])
    case is CSI.NodeGetInfoRequest, is CSI.NodeGetCapabilitiesRequest, is CSI.ProbeRequest, is CSI.GetPluginInfoRequest,
      is CSI.GetPluginCapabilitiesRequest, is CSI.NodePublishVolumeResponse, is CSI.NodeUnpublishVolumeResponse:
      return message(value, [])
    default:
      return "<\(typeName(type(of: value)))>"
    }
  }

  private static func message(_ value: Any, _ fields: [(String, String)]) -> String {
    "\(typeName(type(of: value)))(" + fields.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + ")"
  }

  private static func capability(_ c: CSI.VolumeCapability) -> String {
    let access: String
    switch c.accessType {
    case .mount(let m):
      access = ".mount(fs_type: \(quote(m.fsType)), mount_flags: \(count(m.mountFlags.count)))"
    case .block:
      access = ".block"
    case nil:
      access = "nil"
    }
    return "VolumeCapability(access_type: \(access), access_mode: \(c.accessMode.map { "\($0.mode)" } ?? "nil"))"
  }

  /// Safe keys with their values; any other key with its value redacted.
  private static func context(_ map: [String: String]) -> String {
    let entries = map.keys.sorted().map { key in
      "\(quote(key)): \(PodVolume.safeContextKeys.contains(key) ? quote(map[key]!) : redacted)"
    }
    return "[" + (entries.isEmpty ? ":" : entries.joined(separator: ", ")) + "]"
  }

  private static func keysOnly(_ map: [String: String]) -> String {
    "[" + map.keys.sorted().map { "\(quote($0)): \(redacted)" }.joined(separator: ", ") + "]"
  }

  private static func count(_ n: Int) -> String { n == 0 ? "<none>" : "<\(n) \(redacted)>" }
  private static func size(_ bytes: Int) -> String { "<\(bytes) bytes \(redacted)>" }

  private static func entries(_ n: Int) -> String { "<\(n) entries>" }

  /// Bounded, without control characters, quoted.
  private static func quote(_ string: String) -> String {
    var out = "\""
    for character in SecretScrubber().scrub(string, limitBytes: 256) {
      switch character {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      default: out.append(character)
      }
    }
    return out + "\""
  }

  /// `CSI.NodePublishVolumeRequest` rather than `CSIMessages.CSI.NodePublishVolumeRequest`.
  private static func typeName(_ type: Any.Type) -> String {
    let full = String(reflecting: type)
    return full.split(separator: ".", maxSplits: 1).last.map(String.init) ?? full
  }
}
