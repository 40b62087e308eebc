import Testing
@testable import Formats
import OCI
import Verity

struct LayoutTests {
    @Test func placeholder() {}
}
