fn main() {
    eprintln!("greymilter: not yet runnable");
    std::process::exit(1);
}
