/// A protobuf message with a Swift value representation.
///
/// Every CSI and provider message in this module conforms. Encoding and
/// decoding go through protoc-c underneath; no C type appears in the API.
public protocol ProtoMessage: Sendable, Equatable {
  /// The fully qualified protobuf name, e.g. `csi.v1.NodePublishVolumeRequest`.
  static var protoMessageName: String { get }

  /// Decodes the protobuf wire format. Unknown fields are skipped; malformed
  /// input throws ``ProtoDecodingError``, never traps.
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
