internal import CProtobufC
import Glibc

// The protoc-c boundary. Encoding builds a tree of C structs in an `Arena`
// (freed as one when the call ends), packs it, and discards it; decoding
// unpacks into protoc-c's own allocation, copies into Swift values, and
// always frees the unpacked tree. No C pointer outlives the call.
//
// protoc-c keeps unknown fields and never validates proto3 enum values, so
// newer peers' additions pass through. It rejects the deprecated group wire
// types (3, 4), which no proto3 sender emits. Where protoc-c differs from the
// reference implementations is in merging a singular message field sent more
// than once: a oneof member is replaced rather than merged, and a later
// occurrence's proto3 scalars overwrite earlier ones even when zero. No CSI
// peer splits a message that way. None of these messages is
// recursive, so nesting depth is bounded by the schema.

/// A Swift message backed by a protoc-c struct.
protocol CBridged: ProtoMessage {
  associatedtype CMessage: CZeroInitializable
  /// The generated `..._init` function (the `..._INIT` macros do not import).
  static func cInit(_ message: UnsafeMutablePointer<CMessage>)
  /// Copies out of a C struct that protoc-c unpacked (or the arena built).
  init(c: UnsafePointer<CMessage>)
  /// Builds the C struct in `arena`; valid until the arena is released.
  func toC(_ arena: Arena) -> UnsafeMutablePointer<CMessage>
}

extension CBridged {
  static var cDescriptor: UnsafePointer<ProtobufCMessageDescriptor> {
    // The init function stores the address of the real, static descriptor;
    // taking the address of the imported global would give a temporary.
    var message = CMessage.zeroed()
    Self.cInit(&message)
    return withUnsafeMutablePointer(to: &message) {
      $0.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { $0.pointee.descriptor }
    }
  }

  static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Self {
    let data = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
    // protoc-c wants a non-null pointer even for zero bytes.
    var empty: UInt8 = 0
    let unpacked = withUnsafePointer(to: &empty) { emptyPointer in
      protobuf_c_message_unpack(Self.cDescriptor, nil, bytes.count, data ?? emptyPointer)
    }
    guard let unpacked else {
      throw ProtoDecodingError(messageName: Self.protoMessageName, byteCount: bytes.count)
    }
    defer { protobuf_c_message_free_unpacked(unpacked, nil) }
    return UnsafeMutableRawPointer(unpacked).withMemoryRebound(to: CMessage.self, capacity: 1) {
      Self(c: $0)
    }
  }

  func encode() -> [UInt8] {
    let arena = Arena()
    defer { arena.release() }
    let message = UnsafeMutableRawPointer(self.toC(arena))
      .assumingMemoryBound(to: ProtobufCMessage.self)
    let size = protobuf_c_message_get_packed_size(message)
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
      count = size == 0 ? 0 : protobuf_c_message_pack(message, buffer.baseAddress!)
    }
  }
}

extension ProtoMessage {
  static var shortName: String {
    String(Self.protoMessageName.split(separator: ".").last ?? "")
  }
}

/// Imported C structs get a zero-filling `init()`; this names the intent.
protocol CZeroInitializable { init() }
extension CZeroInitializable { static func zeroed() -> Self { Self() } }

/// Every allocation made while building one message, freed together.
final class Arena {
  private var allocations: [UnsafeMutableRawPointer] = []

  func release() {
    for pointer in self.allocations { free(pointer) }
    self.allocations.removeAll()
  }

  private func allocate(bytes: Int) -> UnsafeMutableRawPointer {
    guard let pointer = calloc(1, max(bytes, 1)) else { fatalError("out of memory") }
    self.allocations.append(pointer)
    return pointer
  }

  /// A zeroed C struct run through its generated init function.
  func message<M: CZeroInitializable>(
    _ initialise: (UnsafeMutablePointer<M>) -> Void
  ) -> UnsafeMutablePointer<M> {
    let pointer = self.allocate(bytes: MemoryLayout<M>.stride).bindMemory(to: M.self, capacity: 1)
    pointer.initialize(to: M())
    initialise(pointer)
    return pointer
  }

  func message<B: CBridged>(_ value: B) -> UnsafeMutablePointer<B.CMessage> { value.toC(self) }

  func string(_ value: String) -> UnsafeMutablePointer<CChar> {
    var utf8 = Array(value.utf8)
    utf8.append(0)
    let pointer = self.allocate(bytes: utf8.count).bindMemory(to: CChar.self, capacity: utf8.count)
    utf8.withUnsafeBytes { UnsafeMutableRawPointer(pointer).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return pointer
  }

  func bytes(_ value: [UInt8]) -> ProtobufCBinaryData {
    let pointer = self.allocate(bytes: value.count).bindMemory(to: UInt8.self, capacity: max(value.count, 1))
    value.withUnsafeBufferPointer { source in
      if let base = source.baseAddress { pointer.update(from: base, count: source.count) }
    }
    return ProtobufCBinaryData(len: value.count, data: pointer)
  }

  func array<T>(_ count: Int, of: T.Type) -> UnsafeMutablePointer<T?> {
    self.allocate(bytes: MemoryLayout<T?>.stride * count).bindMemory(to: T?.self, capacity: max(count, 1))
  }

  func strings(_ values: [String]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
    if values.isEmpty { return (0, nil) }
    let array = self.array(values.count, of: UnsafeMutablePointer<CChar>.self)
    for (index, value) in values.enumerated() { array[index] = self.string(value) }
    return (values.count, array)
  }

  func repeated<B: CBridged>(_ values: [B]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<B.CMessage>?>?) {
    if values.isEmpty { return (0, nil) }
    let array = self.array(values.count, of: UnsafeMutablePointer<B.CMessage>.self)
    for (index, value) in values.enumerated() { array[index] = value.toC(self) }
    return (values.count, array)
  }

  /// A map as protoc-c sees it: repeated key/value entry messages, here in
  /// key order so encoding is deterministic.
  func map<E: CMapEntry>(_ values: [String: String]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<E>?>?) {
    if values.isEmpty { return (0, nil) }
    let array = self.array(values.count, of: UnsafeMutablePointer<E>.self)
    for (index, key) in values.keys.sorted().enumerated() {
      let entry: UnsafeMutablePointer<E> = self.message(E.cInit)
      entry.pointee.key = self.string(key)
      entry.pointee.value = self.string(values[key]!)
      array[index] = entry
    }
    return (values.count, array)
  }
}

/// The entry message protoc-c generates for each `map<string, string>` field.
protocol CMapEntry: CZeroInitializable {
  var key: UnsafeMutablePointer<CChar>! { get set }
  var value: UnsafeMutablePointer<CChar>! { get set }
  static func cInit(_ entry: UnsafeMutablePointer<Self>)
}

// MARK: - Reading C values

/// A proto3 string: unset may be NULL or protobuf_c_empty_string.
func swiftString(_ pointer: UnsafePointer<CChar>?) -> String {
  guard let pointer else { return "" }
  return String(decoding: UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)), as: UTF8.self)
}

func swiftStrings(_ count: Int, _ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
  guard let array, count > 0 else { return [] }
  return (0..<count).map { swiftString(array[$0]) }
}

func swiftBytes(_ data: ProtobufCBinaryData) -> [UInt8] {
  guard let base = data.data, data.len > 0 else { return [] }
  return Array(UnsafeBufferPointer(start: base, count: data.len))
}

func swiftRepeated<B: CBridged>(
  _ count: Int, _ array: UnsafeMutablePointer<UnsafeMutablePointer<B.CMessage>?>?
) -> [B] {
  guard let array, count > 0 else { return [] }
  return (0..<count).compactMap { index in array[index].map { B(c: $0) } }
}

/// Map entries arrive in wire order and may repeat a key; the last one wins,
/// as in every other protobuf implementation.
func swiftMap<E: CMapEntry>(_ count: Int, _ array: UnsafeMutablePointer<UnsafeMutablePointer<E>?>?) -> [String: String] {
  guard let array, count > 0 else { return [:] }
  var result: [String: String] = [:]
  result.reserveCapacity(count)  // no rehashing as the volume context's entries go in
  for index in 0..<count {
    guard let entry = array[index] else { continue }
    result[swiftString(entry.pointee.key)] = swiftString(entry.pointee.value)
  }
  return result
}

func swiftOptional<B: CBridged>(_ pointer: UnsafeMutablePointer<B.CMessage>?) -> B? {
  pointer.map { B(c: $0) }
}

/// Reads an imported C enum as the open proto3 enum value.
func enumValue<E: RawRepresentable>(_ value: E) -> Int32 where E.RawValue: BinaryInteger {
  Int32(truncatingIfNeeded: value.rawValue)
}

/// Makes an imported C enum from an open proto3 enum value (any Int32 is valid).
func cEnum<E: RawRepresentable>(_ value: Int32) -> E where E.RawValue: BinaryInteger {
  E(rawValue: E.RawValue(truncatingIfNeeded: value))!
}
