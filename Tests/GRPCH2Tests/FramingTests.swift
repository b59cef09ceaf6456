import GRPCCore
import Testing

@testable import GRPCH2

@Suite struct FramingTests {
  static func framed(_ messages: [[UInt8]]) -> [UInt8] {
    var out = [UInt8]()
    for m in messages { GRPCFraming.frame(m, into: &out) }
    return out
  }

  @Test func deframesMessagesSplitAtEveryBoundary() throws {
    let messages: [[UInt8]] = [[], [1], Array(0..<200).map { UInt8($0) }, [9, 9, 9]]
    let wire = Self.framed(messages)
    // Every single split point, and byte-by-byte delivery.
    for cut in 0...wire.count {
      var deframer = GRPCMessageDeframer(limit: 1024)
      var got: [[UInt8]] = []
      deframer.append(Array(wire[..<cut]))
      while let m = try deframer.next() { got.append(m) }
      deframer.append(Array(wire[cut...]))
      while let m = try deframer.next() { got.append(m) }
      #expect(got == messages, "split at \(cut)")
      #expect(deframer.bufferedBytes == 0)
    }
    var deframer = GRPCMessageDeframer(limit: 1024)
    var got: [[UInt8]] = []
    for b in wire {
      deframer.append([b])
      while let m = try deframer.next() { got.append(m) }
    }
    #expect(got == messages)
  }

  @Test func rejectsOversizedAndCompressedMessages() {
    var deframer = GRPCMessageDeframer(limit: 10)
    deframer.append(Self.framed([Array(repeating: 1, count: 11)]))
    #expect(throws: GRPCMessageDeframer.Failure.tooLarge(length: 11, limit: 10)) { try deframer.next() }

    var compressed = GRPCMessageDeframer(limit: 10)
    compressed.append([1, 0, 0, 0, 1, 7])
    #expect(throws: GRPCMessageDeframer.Failure.compressed) { try compressed.next() }

    // The limit is checked from the prefix alone, before the body arrives.
    var early = GRPCMessageDeframer(limit: 10)
    early.append([0, 0x7F, 0xFF, 0xFF, 0xFF])
    #expect(throws: GRPCMessageDeframer.Failure.tooLarge(length: 0x7FFF_FFFF, limit: 10)) { try early.next() }
  }

  @Test func percentEncodingRoundTrips() {
    let text = "volume_id is required: 100% \"ünïcode\"\n"
    let encoded = PercentEncoding.encode(text)
    #expect(encoded == "volume_id is required: 100%25 \"%C3%BCn%C3%AFcode\"%0A")
    #expect(PercentEncoding.decode(encoded) == text)
    #expect(PercentEncoding.decode("bad %ZZ escape %4") == "bad %ZZ escape %4")
  }

  @Test func timeoutHeaderEncodesAndDecodes() {
    #expect(GRPCTimeout.decode("100m") == .milliseconds(100))
    #expect(GRPCTimeout.decode("2S") == .seconds(2))
    #expect(GRPCTimeout.decode("1H") == .seconds(3600))
    #expect(GRPCTimeout.decode("5x") == nil)
    #expect(GRPCTimeout.decode("123456789S") == nil)
    #expect(GRPCTimeout.encode(.milliseconds(250)) == "250000u")
    for d: Duration in [.milliseconds(1), .seconds(120), .seconds(100_000)] {
      let back = GRPCTimeout.decode(GRPCTimeout.encode(d))!
      #expect(back >= d && back < d + .seconds(3600))
    }
  }

  @Test func methodPathsParse() {
    #expect(GRPCServerStream.descriptor(fromPath: "/csi.v1.Node/NodeGetInfo")?.fullyQualifiedMethod == "csi.v1.Node/NodeGetInfo")
    #expect(GRPCServerStream.descriptor(fromPath: "csi.v1.Node/NodeGetInfo") == nil)
    #expect(GRPCServerStream.descriptor(fromPath: "/a/b/c") == nil)
    #expect(GRPCServerStream.descriptor(fromPath: "//x") == nil)
    #expect(GRPCServerStream.descriptor(fromPath: "/x/") == nil)
    #expect(GRPCServerStream.descriptor(fromPath: "/x") == nil)
    #expect(GRPCServerStream.descriptor(fromPath: "/") == nil)
    #expect(GRPCServerStream.descriptor(fromPath: "") == nil)
    let odd = GRPCServerStream.descriptor(fromPath: "/pkg.Sérvice/Méthod")
    #expect(odd?.service.fullyQualifiedService == "pkg.Sérvice" && odd?.method == "Méthod")
  }
}
