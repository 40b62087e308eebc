import Synchronization

/// Compressed bytes received, one lock-free counter per `FetchClass`.
final class ClassByteCounters: Sendable {
    private let demand = Atomic<Int64>(0)
    private let readahead = Atomic<Int64>(0)
    private let profile = Atomic<Int64>(0)
    private let prefetch = Atomic<Int64>(0)

    func add(_ count: Int, for fetchClass: FetchClass) {
        let count = Int64(count)
        switch fetchClass {
        case .demand: demand.add(count, ordering: .relaxed)
        case .readahead: readahead.add(count, ordering: .relaxed)
        case .profile: profile.add(count, ordering: .relaxed)
        case .prefetch: prefetch.add(count, ordering: .relaxed)
        }
    }

    var snapshot: BytesByClass {
        BytesByClass(demand: demand.load(ordering: .relaxed), readahead: readahead.load(ordering: .relaxed),
                     profile: profile.load(ordering: .relaxed), prefetch: prefetch.load(ordering: .relaxed))
    }
}
