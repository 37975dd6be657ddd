//! Builds the mail templates (`templates/email/`) into the binary (see
//! `notifications::email::render`).

fn main() {
    minijinja_embed::embed_templates!("templates/email", &[".txt", ".html"]);
}
