import Testing
import UVRuntime

@Suite struct EndpointTests {
  @Test(arguments: [
    ("unix:///csi/csi.sock", Endpoint.unix(path: "/csi/csi.sock")),
    ("unix:/csi/csi.sock", .unix(path: "/csi/csi.sock")),
    // The upstream driver's default flag value: a path relative to the working directory.
    ("unix://tmp/csi.sock", .unix(path: "tmp/csi.sock")),
    ("tcp://127.0.0.1:50051", .tcp(host: "127.0.0.1", port: 50051)),
    ("tcp://localhost:0", .tcp(host: "localhost", port: 0)),
    ("tcp://:8080", .tcp(host: "0.0.0.0", port: 8080)),
    ("tcp://[::1]:443", .tcp(host: "::1", port: 443)),
    ("tcp://10.0.0.1:65535", .tcp(host: "10.0.0.1", port: 65535)),
    ("memory://bench", .memory(name: "bench")),
  ])
  func parses(text: String, expected: Endpoint) throws {
    let endpoint = try Endpoint(parsing: text)
    #expect(endpoint == expected)
    // The description parses back to the same endpoint.
    #expect(try Endpoint(parsing: endpoint.description) == endpoint)
  }

  @Test(arguments: [
    "",
    "csi.sock",
    "/csi/csi.sock",
    "unix://",
    "unix:",
    "tcp://127.0.0.1",
    "tcp://127.0.0.1:",
    "tcp://127.0.0.1:65536",
    "tcp://127.0.0.1:-1",
    "tcp://127.0.0.1:grpc",
    "http://127.0.0.1:80",
    "dns:///csi.example:443",
  ])
  func rejects(text: String) {
    do {
      let endpoint = try Endpoint(parsing: text)
      Issue.record("\(text) parsed as \(endpoint)")
    } catch {
      // The message names what was given, so a bad flag is easy to find.
      #expect(error.description.contains("endpoint \(text):"), "\(error)")
    }
  }

  @Test func descriptionsUseCanonicalForms() {
    #expect(Endpoint.unix(path: "/csi/csi.sock").description == "unix:///csi/csi.sock")
    #expect(Endpoint.tcp(host: "127.0.0.1", port: 9).description == "tcp://127.0.0.1:9")
    #expect(Endpoint.tcp(host: "::1", port: 9).description == "tcp://[::1]:9")
    #expect(Endpoint.memory(name: "x").description == "memory://x")
  }
}
