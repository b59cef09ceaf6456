import CSIMessages
import GRPCCore

/// Encodes MountResponses like `ProtoSerializer`, except that the hostile mode `nul`'s
/// placeholder path goes out with a real NUL byte in it. protobuf-c stores strings as
/// C strings, so no message built in this process can carry one; the wire format can
/// (a length-delimited field), and a driver must not read such a name as a shorter one.
struct NULPatchingSerializer: MessageSerializer {
  /// The same length as the name on the wire, so no length prefix changes.
  static let placeholderPath = "evil\u{1}/../../escape"
  static let placeholder = Array(placeholderPath.utf8)
  static let patched = Array("evil\u{0}/../../escape".utf8)

  func serialize<Bytes: GRPCContiguousBytes>(_ message: Provider.MountResponse) throws -> Bytes {
    var bytes = message.serializedBytes()
    if message.files.contains(where: { $0.path == Self.placeholderPath }) {
      Self.patch(&bytes)
    }
    return Bytes(bytes)
  }

  /// Replaces every occurrence of the placeholder.
  static func patch(_ bytes: inout [UInt8]) {
    let n = placeholder.count
    guard bytes.count >= n else { return }
    var i = 0
    while i <= bytes.count - n {
      if bytes[i] == placeholder[0], bytes[i..<(i + n)].elementsEqual(placeholder) {
        bytes.replaceSubrange(i..<(i + n), with: patched)
        i += n
      } else {
        i += 1
      }
    }
  }
}
