// A minimal protobuf wire writer, so tests state the exact bytes a peer sends.
enum Wire {
  static func varint(_ value: UInt64) -> [UInt8] {
    var value = value
    var out: [UInt8] = []
    while value >= 0x80 {
      out.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    out.append(UInt8(value))
    return out
  }

  static func tag(_ field: Int, _ wireType: Int) -> [UInt8] { varint(UInt64(field << 3 | wireType)) }

  static func varintField(_ field: Int, _ value: UInt64) -> [UInt8] { tag(field, 0) + varint(value) }

  static func bytesField(_ field: Int, _ value: [UInt8]) -> [UInt8] {
    tag(field, 2) + varint(UInt64(value.count)) + value
  }

  static func stringField(_ field: Int, _ value: String) -> [UInt8] { bytesField(field, Array(value.utf8)) }

  static func fixed64Field(_ field: Int, _ value: UInt64) -> [UInt8] {
    tag(field, 1) + (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
  }

  static func fixed32Field(_ field: Int, _ value: UInt32) -> [UInt8] {
    tag(field, 5) + (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
  }

  /// One `map<string, string>` entry.
  static func mapEntry(_ field: Int, _ key: String, _ value: String) -> [UInt8] {
    bytesField(field, stringField(1, key) + stringField(2, value))
  }

  /// One unknown field of each wire type proto3 can send.
  static func unknownFields(startingAt field: Int) -> [UInt8] {
    varintField(field, 300)
      + fixed64Field(field + 1, 0xDEAD_BEEF_CAFE_F00D)
      + stringField(field + 2, "from the future")
      + fixed32Field(field + 3, 0xFEED_F00D)
  }
}
