import CurlHTTP
import Glibc
import Testing
import UVRuntime

/// The Python test server (`test_server.py`): its own CA, server and client certificates,
/// HTTP/1.1 and HTTP/2 over TLS, plain HTTP, and a port that never answers.
final class TestServer: @unchecked Sendable {
  enum Port: String {
    case tls  // ALPN h2 and http/1.1
    case tlsHTTP1 = "tls_h1"
    case plain
    case silent
  }

  let directory: String
  private let pid: pid_t
  private let stdinFD: Int32
  private let ports: [String: Int]

  private init(directory: String, pid: pid_t, stdinFD: Int32, ports: [String: Int]) {
    self.directory = directory
    self.pid = pid
    self.stdinFD = stdinFD
    self.ports = ports
  }

  static let packageRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path
  }()

  /// Starts a server with fresh certificates; it prints its ports once it listens.
  static func start(on loop: EventLoop) async throws -> TestServer {
    let directory = makeTempDirectory()
    // The test virtualenv (`make deps`), else Debian's python3 with python3-h2.
    let venvPython = packageRoot + "/.venv/bin/python"
    let python = access(venvPython, X_OK) == 0 ? venvPython : "/usr/bin/python3"
    let script = packageRoot + "/Tests/CurlHTTPTests/test_server.py"
    var toChild: [Int32] = [0, 0]
    var fromChild: [Int32] = [0, 0]
    precondition(pipe(&toChild) == 0 && pipe(&fromChild) == 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
    posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
    for fd in toChild + fromChild { posix_spawn_file_actions_addclose(&actions, fd) }
    let args = [python, script, "--dir", directory]
    var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, python, &actions, nil, &argv, environ)
    posix_spawn_file_actions_destroy(&actions)
    for p in argv { free(p) }
    close(toChild[0])
    close(fromChild[1])
    guard rc == 0 else { throw ServerError("posix_spawn \(python): \(rc)") }
    let readFD = fromChild[0]
    // The first line on its stdout: {"tls": port, ...}. A blocking read, so off the loop thread.
    let line = try await loop.offload { () -> String in
      var bytes: [UInt8] = []
      var byte: UInt8 = 0
      while read(readFD, &byte, 1) == 1 && byte != 10 { bytes.append(byte) }
      return String(decoding: bytes, as: UTF8.self)
    }
    close(readFD)
    let ports = flatJSONIntegers(line)
    let server = TestServer(directory: directory, pid: pid, stdinFD: toChild[1], ports: ports)
    guard ports.count == 4 else {
      server.stop()
      throw ServerError("the test server did not start: \(line.debugDescription)")
    }
    return server
  }

  /// Closing its stdin ends the server; should it linger, it is killed (a test must
  /// not hang on its server).
  func stop() {
    close(stdinFD)
    var status: Int32 = 0
    var exited = false
    for _ in 0..<100 where !exited {
      exited = waitpid(pid, &status, WNOHANG) == pid
      if !exited { usleep(50_000) }
    }
    if !exited {
      kill(pid, SIGKILL)
      waitpid(pid, &status, 0)
    }
    removeDirectory(directory)
  }

  func url(_ path: String, _ port: Port = .tls, host: String = "127.0.0.1") -> String {
    let scheme = port == .plain ? "http" : "https"
    return "\(scheme)://\(host):\(ports[port.rawValue]!)\(path)"
  }

  var caFile: String { directory + "/ca.crt" }
  func file(_ name: String) -> [UInt8] { Array(readFile("\(directory)/\(name)")!.utf8) }

  /// Trusts the server's CA only.
  var tls: TLSConfiguration { TLSConfiguration(trust: .caFile(caFile)) }

  func request(_ path: String, _ port: Port = .tls, method: HTTPMethod = .get) -> HTTPRequest {
    HTTPRequest(method: method, url: url(path, port), tls: tls)
  }
}

struct ServerError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// `{"a": 1, "b": 2}` as a dictionary: all the test server's JSON with numbers needs.
func flatJSONIntegers(_ text: String) -> [String: Int] {
  var result: [String: Int] = [:]
  for field in text.split(whereSeparator: { "{},".contains($0) }) {
    let kv = field.split(separator: ":")
    guard kv.count == 2, let value = Int(kv[1].filter { $0 != " " }) else { continue }
    result[String(kv[0].filter { $0 != " " && $0 != "\"" })] = value
  }
  return result
}

/// A fresh loop, test server and client for `body`; afterwards the client is shut
/// down and the loop must close cleanly (every handle closed, `uv_loop_close` 0).
func withServer<T>(_ body: (TestServer, HTTPClient) async throws -> T) async throws -> T {
  let loop = EventLoop(name: "curl-test")
  let server: TestServer
  do {
    server = try await TestServer.start(on: loop)
  } catch {
    await loop.shutdownAndWait()
    throw error
  }
  let client = HTTPClient(loop: loop)
  let result: Result<T, any Error>
  do {
    result = .success(try await body(server, client))
  } catch {
    result = .failure(error)
  }
  await client.shutdown()
  server.stop()
  await loop.shutdownAndWait()
  #expect(loop.leakedHandles == [])
  #expect(loop.closeResult == 0)
  #expect(loop.droppedWork == 0)
  return try result.get()
}

/// The server's counters (fetched over their own connection, by a client of their own).
struct ServerStats {
  var h1 = 0, h2 = 0, requests = 0, aborted = 0, endlessLinesSent = 0
}

func stats(_ server: TestServer, _ client: HTTPClient) async throws -> ServerStats {
  var request = server.request("/stats", .plain)
  request.version = .http1_1
  request.headers.set("Connection", "close")
  let body = String(decoding: try await client.execute(request).body, as: UTF8.self)
  var stats = ServerStats()
  for (key, value) in flatJSONIntegers(body) {
    switch key {
    case "h1": stats.h1 = value
    case "h2": stats.h2 = value
    case "requests": stats.requests = value
    case "aborted": stats.aborted = value
    case "endless_lines_sent": stats.endlessLinesSent = value
    default: break
    }
  }
  return stats
}

/// Polls `condition` on the loop's timer until it holds (the suite's time limit bounds it).
/// Waits until `condition` holds, failing with `what` (and the source line) after `limitMs`
/// instead of running into the suite's time limit with no word of which wait it was.
func eventually(
  _ loop: EventLoop, _ what: String = "condition", limitMs: Int = 20_000, sourceLocation: SourceLocation = #_sourceLocation,
  _ condition: () async throws -> Bool
) async throws {
  var waited = 0
  while try await !condition() {
    guard waited < limitMs else {
      throw ServerError("gave up waiting for \(what) after \(limitMs) ms (\(sourceLocation))")
    }
    try await loop.sleep(milliseconds: 20)
    waited += 20
  }
}

func makeTempDirectory() -> String {
  var template = Array("/tmp/curlhttp-XXXXXX".utf8CString)
  return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

func removeDirectory(_ path: String) {
  if let dir = opendir(path) {
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if name == "." || name == ".." { continue }
      unlink("\(path)/\(name)")
    }
    closedir(dir)
  }
  rmdir(path)
}

func readFile(_ path: String) -> String? {
  guard let f = fopen(path, "r") else { return nil }
  defer { fclose(f) }
  var bytes: [UInt8] = []
  while true {
    let c = fgetc(f)
    if c == EOF { break }
    bytes.append(UInt8(c))
  }
  return String(decoding: bytes, as: UTF8.self)
}

/// The server's /bytes pattern.
func pattern(_ count: Int) -> [UInt8] {
  (0..<count).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 8) ^ ($0 >> 16)) }
}

/// The server's /lines?n=N&size=S lines.
func expectedLines(_ n: Int, size: Int = 0) -> [String] {
  (0..<n).map { i in
    let digits = String(i)
    return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + " " + String(repeating: "x", count: size)
  }
}
