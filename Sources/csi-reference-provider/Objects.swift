import FoundationEssentials
import UVRuntime
import VolumeFiles

/// One entry of the `objects` parameter:
/// `{"objectName": "db-password", "path": "db/password", "mode": 256 | "0400", "value": "inline"}`.
struct ObjectSpec: Sendable, Equatable {
  /// The object's id in object_version, and its file name under --data-dir.
  var name: String
  /// Where the driver writes it, relative to the volume.
  var path: String
  /// Permission bits; 0 lets the driver use the request's permission.
  var mode: Int32
  /// Inline contents; nil reads `<data-dir>/<name>`.
  var value: String?
}

/// Why a Mount could not be served. `code` goes to MountResponse.error.code (and
/// the driver's metrics); `reason` is for the log and never holds a value from the request.
struct MountFailure: Error, Sendable {
  var code: String
  var reason: String

  static func invalid(_ reason: String) -> MountFailure { MountFailure(code: "InvalidParameters", reason: reason) }
}

enum ObjectsParameter {
  static let key = "objects"

  private struct Entry: Decodable {
    var objectName: String
    var path: String?
    var mode: Mode?
    var value: String?

    /// A number is the mode itself (256 == 0o400); a string is octal ("0400", "400", "0o400").
    struct Mode: Decodable {
      var bits: Int

      init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) {
          bits = n
          return
        }
        var text = try c.decode(String.self).trimmingSpaces()
        if text.hasPrefix("0o") || text.hasPrefix("0O") { text.removeFirst(2) }
        guard !text.isEmpty, let n = Int(text, radix: 8) else {
          throw DecodingError.dataCorruptedError(in: c, debugDescription: "mode is not octal")
        }
        bits = n
      }
    }
  }

  /// `parse`, remembering what valid texts gave: every pod of one
  /// SecretProviderClass sends the same parameter on every Mount.
  static func parseCached(_ text: String) throws(MountFailure) -> [ObjectSpec] {
    if let hit = parsed.withLock({ $0[text] }) { return hit }
    let specs = try parse(text)
    parsed.withLock { cache in
      if cache.count >= 256 { cache.removeAll() }  // bounded: classes are few, texts rarely change
      cache[text] = specs
    }
    return specs
  }

  private static let parsed = Locked<[String: [ObjectSpec]]>([:])

  /// Parses and validates the `objects` parameter (a JSON array held in a string).
  static func parse(_ text: String) throws(MountFailure) -> [ObjectSpec] {
    let entries: [Entry]
    do {
      entries = try JSONDecoder().decode([Entry].self, from: Data(text.utf8))
    } catch {
      // The decoder's message can quote the input; say only what shape was expected.
      throw .invalid("objects must be a JSON array of {objectName, path?, mode?, value?} with string names and paths")
    }
    var specs: [ObjectSpec] = []
    specs.reserveCapacity(entries.count)
    var names = Set<String>()
    var paths = Set<String>()
    for (i, e) in entries.enumerated() {
      guard PathRules.isValid(e.objectName) else {
        throw .invalid("objects[\(i)].objectName must be a clean relative name (no '..', no leading '/', no '..' prefix)")
      }
      let path = e.path ?? e.objectName
      guard PathRules.isValid(path) else {
        throw .invalid("objects[\(i)].path must be a clean relative path (no '..', no leading '/', no '..' prefix)")
      }
      let mode = e.mode?.bits ?? 0
      guard (0...0o777).contains(mode) else {
        throw .invalid("objects[\(i)].mode must be permission bits from 0 to 0777")
      }
      guard names.insert(e.objectName).inserted else { throw .invalid("objects[\(i)].objectName is a duplicate") }
      guard paths.insert(path).inserted else { throw .invalid("objects[\(i)].path is a duplicate") }
      specs.append(ObjectSpec(name: e.objectName, path: path, mode: Int32(mode), value: e.value))
    }
    return specs
  }
}
