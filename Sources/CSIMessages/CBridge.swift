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
  /// Copies out of a C struct that protoc-c unpacked (or the arena built);
  /// throws for a string field that is not valid UTF-8 or holds a NUL byte.
  init(c: UnsafePointer<CMessage>) throws(ProtoFieldError)
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
    let result = UnsafeMutableRawPointer(unpacked).withMemoryRebound(to: CMessage.self, capacity: 1) { c in
      Result { () throws(ProtoFieldError) in try Self(c: c) }
    }
    switch result {
    case .success(let value): return value
    case .failure(var error):
      error.messageName = Self.protoMessageName
      throw error
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

  /// A string field (declared `bytes` for protoc-c, see scripts/gen-protos.sh): its
  /// UTF-8 with its length, so nothing in it, a NUL byte included, is cut off.
  func string(_ value: String) -> ProtobufCBinaryData {
    var value = value
    return value.withUTF8 { utf8 in
      guard let source = utf8.baseAddress, utf8.count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
      let pointer = self.allocate(bytes: utf8.count).bindMemory(to: UInt8.self, capacity: utf8.count)
      pointer.update(from: source, count: utf8.count)
      return ProtobufCBinaryData(len: utf8.count, data: pointer)
    }
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

  func strings(_ values: [String]) -> (Int, UnsafeMutablePointer<ProtobufCBinaryData>?) {
    if values.isEmpty { return (0, nil) }
    let array = self.allocate(bytes: MemoryLayout<ProtobufCBinaryData>.stride * values.count)
      .bindMemory(to: ProtobufCBinaryData.self, capacity: values.count)
    for (index, value) in values.enumerated() { (array + index).initialize(to: self.string(value)) }
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

/// The entry message protoc-c generates for each `map<string, string>` field
/// (with bytes key and value, see scripts/gen-protos.sh).
protocol CMapEntry: CZeroInitializable {
  var key: ProtobufCBinaryData { get set }
  var value: ProtobufCBinaryData { get set }
  static func cInit(_ entry: UnsafeMutablePointer<Self>)
}

// MARK: - Reading C values

// Every string field arrives as (length, data). It becomes a Swift string only
// when it is valid UTF-8 (as proto3 requires of a string) and holds no NUL byte
// (no CSI or provider string may: each is a path, an id, a name or JSON, and the
// kernel would end a path at the NUL). Otherwise the whole message is refused
// with a ProtoFieldError naming the field, never quoting its value.
//
// Cost per field: memchr for the NUL, the one copy into the String, and a memcmp
// of that copy with the input (all three vectorized). `String(decoding:)` replaces
// each invalid sequence with U+FFFD, so its bytes equal the input exactly when the
// input was valid UTF-8. (`String(validating:as:)` says so directly but is generic
// over the encoding and not specialized: measured 600 instructions more per field.)

/// A proto3 string: unset is length 0 (data may be NULL).
@inline(__always)
func swiftString(_ data: ProtobufCBinaryData, _ field: String) throws(ProtoFieldError) -> String {
  guard data.len > 0, let base = data.data else { return "" }
  guard memchr(base, 0, data.len) == nil else { throw ProtoFieldError(field: field, problem: .nulByte) }
  var value = String(decoding: UnsafeBufferPointer(start: base, count: data.len), as: UTF8.self)
  let exact = value.withUTF8 { utf8 in utf8.count == data.len && memcmp(utf8.baseAddress!, base, data.len) == 0 }
  guard exact else { throw ProtoFieldError(field: field, problem: .invalidUTF8) }
  return value
}

func swiftStrings(_ count: Int, _ array: UnsafeMutablePointer<ProtobufCBinaryData>?, _ field: String) throws(ProtoFieldError) -> [String] {
  guard let array, count > 0 else { return [] }
  var result: [String] = []
  result.reserveCapacity(count)
  for index in 0..<count {
    do {
      result.append(try swiftString(array[index], field))
    } catch {
      throw ProtoFieldError(field: "\(field)[\(index)]", problem: error.problem)
    }
  }
  return result
}

func swiftBytes(_ data: ProtobufCBinaryData) -> [UInt8] {
  guard let base = data.data, data.len > 0 else { return [] }
  return Array(UnsafeBufferPointer(start: base, count: data.len))
}

func swiftRepeated<B: CBridged>(
  _ count: Int, _ array: UnsafeMutablePointer<UnsafeMutablePointer<B.CMessage>?>?, _ field: String
) throws(ProtoFieldError) -> [B] {
  guard let array, count > 0 else { return [] }
  var result: [B] = []
  result.reserveCapacity(count)
  for index in 0..<count {
    guard let element = array[index] else { continue }
    do {
      result.append(try B(c: element))
    } catch {
      throw error.inside("\(field)[\(index)]")
    }
  }
  return result
}

/// Map entries arrive in wire order and may repeat a key; the last one wins,
/// as in every other protobuf implementation. `secret`: the map's keys are not
/// named in an error either (a `secrets` map).
func swiftMap<E: CMapEntry>(
  _ count: Int, _ array: UnsafeMutablePointer<UnsafeMutablePointer<E>?>?, _ field: String, secret: Bool = false
) throws(ProtoFieldError) -> [String: String] {
  guard let array, count > 0 else { return [:] }
  var result: [String: String] = [:]
  result.reserveCapacity(count)
  for index in 0..<count {
    guard let entry = array[index] else { continue }
    let key: String
    do {
      key = try swiftString(entry.pointee.key, field)
    } catch {
      throw ProtoFieldError(field: field, entry: .key, problem: error.problem)
    }
    do {
      result[key] = try swiftString(entry.pointee.value, field)
    } catch {
      throw ProtoFieldError(field: field, entry: .value(key: secret ? nil : ProtoFieldError.printableKey(key)), problem: error.problem)
    }
  }
  return result
}

func swiftOptional<B: CBridged>(_ pointer: UnsafeMutablePointer<B.CMessage>?, _ field: String) throws(ProtoFieldError) -> B? {
  guard let pointer else { return nil }
  do {
    return try B(c: pointer)
  } catch {
    throw error.inside(field)
  }
}

/// Reads an imported C enum as the open proto3 enum value.
func enumValue<E: RawRepresentable>(_ value: E) -> Int32 where E.RawValue: BinaryInteger {
  Int32(truncatingIfNeeded: value.rawValue)
}

/// Makes an imported C enum from an open proto3 enum value (any Int32 is valid).
func cEnum<E: RawRepresentable>(_ value: Int32) -> E where E.RawValue: BinaryInteger {
  E(rawValue: E.RawValue(truncatingIfNeeded: value))!
}
