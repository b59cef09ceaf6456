/// A protobuf message with a Swift value representation.
///
/// Every CSI and provider message in this module conforms. Encoding and
/// decoding go through protoc-c underneath; no C type appears in the API.
public protocol ProtoMessage: Sendable, Equatable {
  /// The fully qualified protobuf name, e.g. `csi.v1.NodePublishVolumeRequest`.
  static var protoMessageName: String { get }

  /// Decodes the protobuf wire format. Unknown fields are skipped; malformed
  /// input throws ``ProtoDecodingError``, a string field that is not valid
  /// UTF-8 or holds a NUL byte throws ``ProtoFieldError``; neither traps.
  init(serializedBytes bytes: UnsafeRawBufferPointer) throws

  /// Encodes to the protobuf wire format. Map entries are written in key order,
  /// so equal values always give equal bytes.
  func serializedBytes() -> [UInt8]
}

extension ProtoMessage {
  /// Decodes the protobuf wire format from an array.
  public init(serializedBytes bytes: [UInt8]) throws {
    self = try bytes.withUnsafeBytes { try Self(serializedBytes: $0) }
  }
}

/// The bytes given were not a valid encoding of the message.
public struct ProtoDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The fully qualified protobuf name of the message being decoded.
  public var messageName: String
  /// The number of bytes that failed to decode.
  public var byteCount: Int

  public init(messageName: String, byteCount: Int) {
    self.messageName = messageName
    self.byteCount = byteCount
  }

  public var description: String {
    "invalid \(self.messageName): \(self.byteCount) bytes are not a valid protobuf encoding"
  }
}

/// A string field that is not valid UTF-8 or holds a NUL byte. The message
/// names the field (and, for a map that is not secret, the entry's key when it
/// is printable), never the value.
public struct ProtoFieldError: Error, Sendable, Hashable, CustomStringConvertible {
  public enum Problem: Sendable, Hashable {
    case nulByte
    case invalidUTF8
  }

  /// Which part of a map entry is bad.
  public enum Entry: Sendable, Hashable {
    case key
    /// The value; `key` is nil when it may not be shown (a `secrets` map, or not printable).
    case value(key: String?)
  }

  /// The fully qualified name of the message decoded (empty until the decoder fills it in).
  public var messageName: String
  /// The field's path in that message, as the .proto names it: `target_path`,
  /// `volume_capability.mount.mount_flags[1]`, `files[2].path`.
  public var field: String
  public var entry: Entry?
  public var problem: Problem

  public init(messageName: String = "", field: String, entry: Entry? = nil, problem: Problem) {
    self.messageName = messageName
    self.field = field
    self.entry = entry
    self.problem = problem
  }

  /// The same error seen from the message that holds this one in `field`.
  func inside(_ field: String) -> ProtoFieldError {
    ProtoFieldError(messageName: messageName, field: "\(field).\(self.field)", entry: entry, problem: problem)
  }

  /// A map key short and plain enough to quote in an error, else nil.
  static func printableKey(_ key: String) -> String? {
    key.utf8.count <= 128 && key.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
      ? key : nil
  }

  public var description: String {
    let what = switch problem {
    case .nulByte: "contains a NUL byte"
    case .invalidUTF8: "is not valid UTF-8"
    }
    let subject = switch entry {
    case nil: "field \(field)"
    case .key: "a key of field \(field)"
    case .value(let key?): "the value of \(field)[\"\(key)\"]"
    case .value(nil): "a value of field \(field)"
    }
    return "invalid \(messageName.isEmpty ? "message" : messageName): \(subject) \(what)"
  }
}
