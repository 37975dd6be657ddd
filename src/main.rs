use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    registrar::cli::run().await
}
