public import GRPCCore

/// Encodes any ``ProtoMessage`` for GRPCCore.
public struct ProtoSerializer<Message: ProtoMessage>: MessageSerializer {
  public init() {}

  public func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
    Bytes(message.serializedBytes())
  }
}

/// Decodes any ``ProtoMessage`` for GRPCCore.
///
/// A decode failure throws `RPCError(code: .invalidArgument)` naming the
/// message type (and, for a string field with a NUL byte or invalid UTF-8, the
/// field; the ``ProtoFieldError`` is the error's cause). GRPCCore's server executor deserializes inside the handler's
/// request sequence and passes an `RPCError` thrown there through unchanged,
/// so a client sending bad bytes sees INVALID_ARGUMENT rather than UNKNOWN.
public struct ProtoDeserializer<Message: ProtoMessage>: MessageDeserializer {
  public init() {}

  public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
    do {
      return try serializedMessageBytes.withUnsafeBytes { try Message(serializedBytes: $0) }
    } catch let error as ProtoFieldError {
      // Names the field, never its value (which may be a secret or a token).
      throw RPCError(code: .invalidArgument, message: error.description, cause: error)
    } catch {
      throw RPCError(
        code: .invalidArgument,
        message: "could not decode \(Message.protoMessageName): malformed protobuf",
        cause: error
      )
    }
  }
}
