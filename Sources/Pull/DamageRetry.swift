import Fetch
import Glibc
import Logging

/// The pull's side of the one retry policy (`RegistryClient.verifiedFetchAttempts`): a frame run or
/// a layer whose bytes arrive damaged (a frame or layer that does not verify, a body that breaks
/// the protocol) is fetched again, up to the same number of attempts as a whole object or a
/// mounted frame; the last attempt's error is the one reported.
enum DamageRetry {
    static func run(_ what: @autoclosure () -> String, logger: Logger, _ attempt: () throws(PullError) -> Void) throws(PullError) {
        var tries = 0
        while true {
            tries += 1
            do {
                return try attempt()
            } catch {
                guard isDamage(error), tries < RegistryClient.verifiedFetchAttempts else { throw error }
                logger.info("damaged bytes; fetching them again", metadata: ["what": "\(what())", "attempt": "\(tries)", "error": "\(error)"])
                usleep(UInt32(100_000 * tries))
            }
        }
    }

    static func isDamage(_ error: PullError) -> Bool {
        switch error {
        case .frame, .layer: true
        case .registry(let fetch):
            switch fetch.kind {
            case .digestMismatch, .invalidResponse: true
            // Dropped connections and 5xx were retried by the client already, per request.
            default: false
            }
        default: false
        }
    }
}
