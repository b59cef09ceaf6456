import GRPCCore
import Telemetry
import Testing
import UVRuntime

@testable import DriverCore

/// What DriverMetrics records for each publish outcome, read back from the rendered
/// text (the observable output), with a manual clock.
@Suite struct DriverMetricsTests {
  final class Clock: @unchecked Sendable {
    let lock = Lock()
    var t = ContinuousClock.now
    func now() -> ContinuousClock.Instant { lock.withLock { t } }
    func advance(_ d: Duration) { lock.withLock { t += d } }
  }

  @Test func outcomesMapToUpstreamCountersAndOurs() {
    let clock = Clock()
    let m = DriverMetrics(version: "v9", now: clock.now)
    let start = clock.now()
    clock.advance(.milliseconds(1500))
    m.published(.mounted, provider: "vault", target: "/t/a", since: start)
    m.published(.refreshed(changed: true), provider: "vault", target: "/t/a", since: start)
    m.published(.refreshed(changed: false), provider: "vault", target: "/t/a", since: start)
    m.published(.upToDate, provider: "vault", target: "/t/b", since: start)
    m.published(.refreshFailed(PublishError(.providerError(code: "Throttled"), "x")), provider: "vault", target: "/t/b", since: start)
    m.publishFailed(PublishError(.classNotFound, "x"), provider: "", since: start)
    let text = m.registry.render()
    #expect(text.contains("node_publish_total{os_type=\"linux\",provider=\"vault\"} 4\n"))
    #expect(text.contains("node_publish_error_total{os_type=\"linux\",provider=\"vault\",error_type=\"Throttled\"} 1\n"))
    #expect(text.contains("node_publish_error_total{os_type=\"linux\",provider=\"\",error_type=\"SecretProviderClassNotFound\"} 1\n"))
    #expect(text.contains("rotation_reconcile_total{os_type=\"linux\",provider=\"vault\",rotated=\"true\"} 1\n"))
    #expect(text.contains("rotation_reconcile_total{os_type=\"linux\",provider=\"vault\",rotated=\"false\"} 1\n"))
    #expect(text.contains("rotation_reconcile_error_total{os_type=\"linux\",provider=\"vault\",rotated=\"false\",error_type=\"Throttled\"} 1\n"))
    // 1.5 s lands in the 2.5 s bucket, not the 1 s one.
    #expect(text.contains("rotation_reconcile_duration_sec_bucket{os_type=\"linux\",le=\"1\"} 0\n"))
    #expect(text.contains("rotation_reconcile_duration_sec_bucket{os_type=\"linux\",le=\"2.5\"} 2\n"))
    #expect(text.contains("rotation_reconcile_duration_sec_bucket{os_type=\"linux\",le=\"120\"} 2\n"))
    #expect(text.contains("secrets_store_node_publish_duration_seconds_count{provider=\"vault\",outcome=\"refresh_failed\"} 1\n"))
    #expect(text.contains("secrets_store_build_info{version=\"v9\"} 1\n"))
    // Two volumes: /t/a fetched at `clock`, /t/b never fetched by this process.
    clock.advance(.seconds(100))
    let later = m.registry.render()
    #expect(later.contains("secrets_store_volumes 2\n"))
    #expect(later.contains("secrets_store_volumes_content_age_unknown 1\n"))
    #expect(later.contains("secrets_store_volume_content_age_max_seconds 100\n"))
    #expect(later.contains("secrets_store_volume_content_age_seconds_bucket{le=\"60\"} 0\nsecrets_store_volume_content_age_seconds_bucket{le=\"120\"} 1\n"))
    m.unpublished(target: "/t/a")
    m.unpublished(target: "/t/b")
    let empty = m.registry.render()
    #expect(empty.contains("secrets_store_volumes 0\n"))
    #expect(empty.contains("secrets_store_volume_content_age_seconds_count 0\n"))
    #expect(empty.contains("node_unpublish_total{os_type=\"linux\"} 2\n"))
  }

  @Test func timerRefreshesCountAsRotationNotAsPublishes() {
    let clock = Clock()
    let m = DriverMetrics(now: clock.now)
    let start = clock.now()
    m.rotationReconciled(.refreshed(changed: true), provider: "aws", target: "/t/a", since: start)
    m.rotationReconciled(.refreshFailed(PublishError(.providerUnreachable, "x")), provider: "aws", target: "/t/a", since: start)
    let text = m.registry.render()
    #expect(text.contains("rotation_reconcile_total{os_type=\"linux\",provider=\"aws\",rotated=\"true\"} 1\n"))
    #expect(text.contains("rotation_reconcile_error_total{os_type=\"linux\",provider=\"aws\",rotated=\"false\",error_type=\"GRPCProviderError\"} 1\n"))
    #expect(text.contains("rotation_reconcile_duration_sec_count{os_type=\"linux\"} 1\n"))
    #expect(!text.contains("node_publish_total{"))
    #expect(!text.contains("node_publish_error_total{"))
    #expect(text.contains("secrets_store_volumes 1\n"))
  }

  @Test func providerCodesAreBounded() {
    let m = DriverMetrics()
    #expect(m.errorType(PublishError(.providerError(code: "AccessDenied"), "")) == "AccessDenied")
    #expect(m.errorType(PublishError(.providerError(code: "token=abc def"), "")) == "ProviderError")
    #expect(m.errorType(PublishError(.providerError(code: String(repeating: "a", count: 65)), "")) == "ProviderError")
    for i in 0..<64 { _ = m.errorType(PublishError(.providerError(code: "Code\(i)"), "")) }
    #expect(m.errorType(PublishError(.providerError(code: "OneTooMany"), "")) == "other")
    #expect(m.errorType(PublishError(.mountPoint, "")) == "FailedToEnsureMountPoint")
  }

  @Test func providerCallsCountByCodeAndRememberWhoAnswered() {
    let m = DriverMetrics()
    let calls = m.providerCalls(for: "aws")
    calls.record(method: "Mount", code: "OK", since: .now)
    calls.record(method: "Version", error: ProviderCallError(provider: "aws", kind: .unreachable, detail: ""), since: .now)
    calls.record(method: "Mount", error: ProviderCallError(provider: "aws", kind: .status(.permissionDenied), detail: ""), since: .now)
    m.providerCalls(for: "gcp").record(method: "Mount", error: ProviderCallError(provider: "gcp", kind: .deadlineExceeded, detail: ""), since: .now)
    // An answer the driver refuses (a NUL byte in a path) is INTERNAL, as grpc-go names an unreadable answer.
    let refused = ProviderCallError(provider: "gcp", kind: .badResponse, detail: "invalid v1alpha1.MountResponse: field files[0].path contains a NUL byte")
    m.providerCalls(for: "gcp").record(method: "Mount", error: refused, since: .now)
    let publish = PublishError(refused)
    #expect(publish.kind == .badProviderResponse && publish.code == .internalError && publish.errorType == "GRPCProviderError")
    #expect(publish.message == "provider \"gcp\" sent a response the driver refuses: invalid v1alpha1.MountResponse: field files[0].path contains a NUL byte")
    let text = m.registry.render()
    #expect(text.contains("secrets_store_provider_calls_total{provider=\"aws\",method=\"Mount\",code=\"OK\"} 1\n"))
    #expect(text.contains("secrets_store_provider_calls_total{provider=\"aws\",method=\"Version\",code=\"UNAVAILABLE\"} 1\n"))
    #expect(text.contains("secrets_store_provider_calls_total{provider=\"aws\",method=\"Mount\",code=\"PERMISSION_DENIED\"} 1\n"))
    #expect(text.contains("secrets_store_provider_calls_total{provider=\"gcp\",method=\"Mount\",code=\"DEADLINE_EXCEEDED\"} 1\n"))
    #expect(text.contains("secrets_store_provider_calls_total{provider=\"gcp\",method=\"Mount\",code=\"INTERNAL\"} 1\n"))
    #expect(m.providersThatAnswered == ["aws"])
  }
}
