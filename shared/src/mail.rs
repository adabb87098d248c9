//! The SES v2 adapter: the only code that sends email.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::DisplayErrorContext;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::email::render::Email;

#[derive(Debug, thiserror::Error)]
#[error("SES {operation} failed: {message}")]
pub struct MailError {
    operation: &'static str,
    message: String,
}

fn mail_error<E>(operation: &'static str) -> impl FnOnce(E) -> MailError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |error| MailError {
        operation,
        message: DisplayErrorContext(&error).to_string(),
    }
}

/// Sends email from one address, an SES identity.
#[derive(Clone)]
pub struct Mailer {
    client: Client,
    from: String,
}

fn content(text: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(mail_error("SendEmail"))
}

impl Mailer {
    pub fn new(client: Client, from: impl Into<String>) -> Self {
        Self {
            client,
            from: from.into(),
        }
    }

    pub fn from_address(&self) -> &str {
        &self.from
    }

    /// Sends `email` to every address of `to` (one message); SES's message id.
    pub async fn send(&self, to: &[String], email: &Email) -> Result<String, MailError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let output = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(to.to_vec()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(mail_error("SendEmail"))?;
        Ok(output.message_id.unwrap_or_default())
    }

    /// Makes the sender an identity SES sends from: for an emulator, where
    /// nobody verifies it by hand. One that exists already is left as it is.
    pub async fn create_sender_identity(&self) -> Result<(), MailError> {
        match self
            .client
            .create_email_identity()
            .email_identity(&self.from)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(mail_error("CreateEmailIdentity")(error)),
        }
    }
}
