fn main() {
    println!("fjord");
}
