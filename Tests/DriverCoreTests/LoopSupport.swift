import Testing
import UVRuntime

/// Runs `body` with a fresh loop, shuts the loop down (also when `body` throws), and
/// checks that the code under test closed every handle it opened and the loop closed.
func withLoop(_ name: String, _ body: (EventLoop) async throws -> Void) async throws {
  let loop = EventLoop(name: name)
  do {
    try await body(loop)
  } catch {
    await loop.shutdownAndWait()
    throw error
  }
  await loop.shutdownAndWait()
  #expect(loop.leakedHandles == [] && loop.closeResult == 0)
}
