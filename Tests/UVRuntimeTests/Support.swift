import Glibc
import Testing
import UVRuntime

/// Runs `body` with a fresh loop, shuts the loop down, and checks that the code
/// under test closed every handle it opened (`uv_loop_close` returned 0, nothing leaked).
func withLoop<T>(_ name: String = "test", _ body: (EventLoop) async throws -> T) async throws -> T {
  let loop = EventLoop(name: name)
  let result: T
  do {
    result = try await body(loop)
  } catch {
    await loop.shutdownAndWait()
    throw error
  }
  await loop.shutdownAndWait()
  #expect(loop.leakedHandles == [])
  #expect(loop.closeResult == 0)
  #expect(loop.droppedWork == 0)
  return result
}

/// Waits (polling, off the loop) until `condition` holds; false after `bound`.
func eventually(within bound: Duration = .seconds(10), _ condition: () -> Bool) async throws -> Bool {
  let clock = ContinuousClock()
  let end = clock.now + bound
  while !condition() {
    if clock.now >= end { return false }
    try await Task.sleep(for: .milliseconds(5))
  }
  return true
}

/// Ends an `onLoop` body, from the loop thread, exactly once.
struct Done<T: Sendable>: Sendable {
  let continuation: CheckedContinuation<T, any Error>
  func callAsFunction(_ value: T) { continuation.resume(returning: value) }
  func callAsFunction() where T == Void { continuation.resume(returning: ()) }
  func fail(_ error: any Error) { continuation.resume(throwing: error) }
}

/// Runs `body` on the loop thread, where libuv may be called, and waits until it
/// (or a callback it set up) calls `done`.
func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable (Done<T>) throws -> Void) async throws -> T {
  try await withCheckedThrowingContinuation { c in
    loop.execute {
      do { try body(Done(continuation: c)) } catch { c.resume(throwing: error) }
    }
  }
}

/// State shared by closures that all run on one loop thread.
final class LoopBox<Value>: @unchecked Sendable {
  var value: Value
  init(_ value: Value) { self.value = value }
}

/// Records what a stream reports, and echoes what it reads if asked. Loop thread only.
final class Recorder: ByteStreamDelegate, @unchecked Sendable {
  let echo: Bool
  var received: [UInt8] = []
  var drains = 0
  var closed = false
  var closeError: UVError?
  // Callbacks get the recorder, so they need not capture it (no reference cycle).
  var onRead: ((Recorder) -> Void)?
  var onDrain: ((Recorder) -> Void)?
  var onClose: ((Recorder) -> Void)?

  init(echo: Bool = false) { self.echo = echo }

  func byteStream(_ stream: any ByteStream, didRead bytes: UnsafeRawBufferPointer) {
    received += bytes
    if echo { stream.write(bytes) }
    onRead?(self)
  }

  func byteStreamDidDrain(_ stream: any ByteStream) {
    drains += 1
    onDrain?(self)
  }

  func byteStreamDidClose(_ stream: any ByteStream, error: UVError?) {
    #expect(!closed, "a stream reported its end twice")
    closed = true
    closeError = error
    onClose?(self)
  }
}

/// Bytes that do not repeat with a short period, so reordering or loss shows.
func pattern(_ count: Int) -> [UInt8] {
  (0..<count).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 8) ^ ($0 >> 16)) }
}

/// OS threads (not tasks), started at once and joined on demand.
final class Threads {
  private final class Start {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
  }

  private var ids: [pthread_t] = []

  init(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    for index in 0..<count {
      let start = Unmanaged.passRetained(Start { body(index) }).toOpaque()
      var id = pthread_t()
      let rc = pthread_create(&id, nil, { arg in
        Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue().run()
        return nil
      }, start)
      precondition(rc == 0, "pthread_create failed")
      ids.append(id)
    }
  }

  func join() {
    for id in ids { pthread_join(id, nil) }
    ids = []
  }
}

/// A new empty directory under /tmp; `removeDirectory` deletes it and what it holds.
func makeTempDirectory() -> String {
  var template = Array("/tmp/uvruntime-XXXXXX".utf8CString)
  return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

func removeDirectory(_ path: String) {
  if let dir = opendir(path) {
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
      if name == "." || name == ".." { continue }
      let child = "\(path)/\(name)"
      if unlink(child) != 0 { rmdir(child) }
    }
    closedir(dir)
  }
  rmdir(path)
}

func fileType(_ path: String) -> mode_t? {
  var st = stat()
  guard lstat(path, &st) == 0 else { return nil }
  return st.st_mode & S_IFMT
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

func writeFile(_ path: String, _ text: String) {
  let f = fopen(path, "w")!
  fputs(text, f)
  fclose(f)
}

/// Leaves a socket file behind with nobody listening, as a crashed driver does.
func makeStaleSocket(_ path: String) {
  let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
  precondition(fd >= 0)
  var addr = sockaddr_un()
  addr.sun_family = sa_family_t(AF_UNIX)
  let bytes = Array(path.utf8)
  precondition(bytes.count < MemoryLayout.size(ofValue: addr.sun_path))
  withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: bytes) }
  let rc = withUnsafePointer(to: &addr) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
  }
  precondition(rc == 0, "bind \(path) failed")
  close(fd)
}
