// Shared by every fuzz target: a property violation is a crash that libFuzzer records with its input.
#if canImport(Glibc)
import Glibc
#endif

@inline(never)
func check(_ condition: @autoclosure () -> Bool, _ message: StaticString) {
    if !condition() {
        let text = "fuzz property violated: \(message)\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        abort()
    }
}
