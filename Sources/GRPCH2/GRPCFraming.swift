public import GRPCCore

/// gRPC's length-prefixed message framing: a 1-byte compressed flag, a 4-byte
/// big-endian length, then the message. A pure state machine, fed arbitrary
/// slices of the HTTP/2 DATA stream.
public struct GRPCMessageDeframer: Sendable {
  public enum Failure: Error, Equatable, Sendable {
    /// The length prefix announces more than the limit.
    case tooLarge(length: Int, limit: Int)
    /// The compressed flag is set, and we negotiate no compression.
    case compressed
  }

  public let limit: Int
  private var buffer: [UInt8] = []
  private var readIndex = 0

  public init(limit: Int) {
    self.limit = limit
  }

  /// Bytes received but not yet returned as messages.
  public var bufferedBytes: Int { buffer.count - readIndex }

  public mutating func append(_ bytes: UnsafeRawBufferPointer) {
    if readIndex > 0 && readIndex == buffer.count {
      buffer.removeAll(keepingCapacity: true)
      readIndex = 0
    }
    buffer.append(contentsOf: bytes)
  }

  public mutating func append(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { append($0) }
  }

  /// The next complete message, or nil when more bytes are needed.
  public mutating func next() throws(Failure) -> [UInt8]? {
    let available = buffer.count - readIndex
    guard available >= 5 else { return nil }
    let flag = buffer[readIndex]
    let length =
      Int(buffer[readIndex + 1]) << 24 | Int(buffer[readIndex + 2]) << 16
      | Int(buffer[readIndex + 3]) << 8 | Int(buffer[readIndex + 4])
    if flag != 0 { throw .compressed }
    if length > limit { throw .tooLarge(length: length, limit: limit) }
    guard available >= 5 + length else { return nil }
    let start = readIndex + 5
    let message = Array(buffer[start..<(start + length)])
    readIndex = start + length
    if readIndex == buffer.count {
      buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024)
      readIndex = 0
    } else if readIndex > 64 * 1024 {
      buffer.removeFirst(readIndex)
      readIndex = 0
    }
    return message
  }
}

public enum GRPCFraming {
  /// Appends `message` with its 5-byte prefix to `out`.
  public static func frame(_ message: [UInt8], into out: inout [UInt8]) {
    let n = UInt32(message.count)
    out.reserveCapacity(out.count + 5 + message.count)
    out.append(0)
    out.append(UInt8(truncatingIfNeeded: n >> 24))
    out.append(UInt8(truncatingIfNeeded: n >> 16))
    out.append(UInt8(truncatingIfNeeded: n >> 8))
    out.append(UInt8(truncatingIfNeeded: n))
    out.append(contentsOf: message)
  }
}

/// `grpc-message` is percent-encoded: bytes outside printable ASCII, and `%`.
public enum PercentEncoding {
  public static func encode(_ text: String) -> String {
    var out = [UInt8]()
    out.reserveCapacity(text.utf8.count)
    let hex = Array("0123456789ABCDEF".utf8)
    for b in text.utf8 {
      if b >= 0x20 && b <= 0x7E && b != UInt8(ascii: "%") {
        out.append(b)
      } else {
        out.append(UInt8(ascii: "%"))
        out.append(hex[Int(b >> 4)])
        out.append(hex[Int(b & 0xF)])
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Decodes `%XX`; malformed escapes are kept as they are (the spec says to be lenient).
  public static func decode(_ text: String) -> String {
    let bytes = Array(text.utf8)
    guard bytes.contains(UInt8(ascii: "%")) else { return text }
    var out = [UInt8]()
    out.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
      if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
        out.append(hi << 4 | lo)
        i += 3
      } else {
        out.append(bytes[i])
        i += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  private static func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
  }
}

/// `grpc-timeout`: at most 8 digits and a unit (H M S m u n).
///
/// A call's deadline lives in the transport: a loop timer per call ends it
/// (GRPCCore's own deadline is a `Task.sleep`, which on Linux keeps its memory
/// until it would have fired). On the server, only the `grpc-timeout` header
/// sets it, and handlers read it from `ServerContext.callDeadline`, never from
/// metadata, so a client cannot hand a handler a deadline of its choosing.
public enum GRPCTimeout {
  /// Request metadata that asks our client transport to enforce `timeout` and
  /// send it as `grpc-timeout` (instead of `CallOptions.timeout`, whose timer is
  /// GRPCCore's `Task.sleep`). The client transport takes it out of the
  /// metadata: it never reaches the wire.
  public static func metadata(_ timeout: Duration) -> Metadata {
    [clientDeadlineKey: .string(encode(timeout))]
  }

  /// Where `metadata(_:)` puts the timeout for the client transport. A server
  /// drops an inbound header of this name, so no handler that forwards the
  /// metadata it received can turn a caller's header into a deadline downstream.
  static let clientDeadlineKey = "x-h2-grpc-timeout"

  /// The encoded timeout `metadata(_:)` put in `metadata`, if there is one.
  static func clientTimeout(in metadata: Metadata) -> String? {
    var values = metadata[stringValues: clientDeadlineKey].makeIterator()
    return values.next()
  }

  public static func encode(_ duration: Duration) -> String {
    let (seconds, atto) = duration.components
    let nanos = max(0, seconds) * 1_000_000_000 + max(0, atto) / 1_000_000_000
    // Pick the finest unit that fits in 8 digits.
    let units: [(Int64, String)] = [(1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"), (3_600_000_000_000, "H")]
    for (scale, unit) in units {
      let value = (nanos + scale - 1) / scale
      if value < 100_000_000 { return "\(value)\(unit)" }
    }
    return "99999999H"
  }

  public static func decode(_ text: String) -> Duration? {
    guard let unit = text.last, text.count >= 2, text.count <= 9,
      let value = Int64(text.dropLast()), value >= 0
    else { return nil }
    switch unit {
    case "H": return .seconds(value * 3600)
    case "M": return .seconds(value * 60)
    case "S": return .seconds(value)
    case "m": return .milliseconds(value)
    case "u": return .microseconds(value)
    case "n": return .nanoseconds(value)
    default: return nil
    }
  }
}

/// Base64 for `-bin` metadata (padded or not on input).
enum Base64 {
  private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

  static func decode(_ text: String) -> [UInt8]? {
    var out = [UInt8]()
    var acc: UInt32 = 0
    var bits = 0
    for c in text.utf8 {
      let v: UInt8
      switch c {
      case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = c - UInt8(ascii: "A")
      case UInt8(ascii: "a")...UInt8(ascii: "z"): v = c - UInt8(ascii: "a") + 26
      case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0") + 52
      case UInt8(ascii: "+"), UInt8(ascii: "-"): v = 62
      case UInt8(ascii: "/"), UInt8(ascii: "_"): v = 63
      case UInt8(ascii: "="): continue
      default: return nil
      }
      acc = acc << 6 | UInt32(v)
      bits += 6
      if bits >= 8 {
        bits -= 8
        out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
      }
    }
    return out
  }
}
