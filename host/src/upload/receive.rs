//! Drives one upload: body chunks → parser events → store files and form fields.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderValue;

use super::cleanup::{FileSet, UploadedFiles};
use super::config::UploadConfig;
use super::fields::{FieldPolicy, StoredFile, TextDecision, sanitize_filename};
use super::form::FormWriter;
use super::headers::PartHead;
use super::multipart::{Event, Parser, ParserLimits};
use super::request::UploadRequest;
use super::store::FileSink;
use super::{BoxError, UploadError};

/// A completed upload: the rewritten form and the files it refers to.
#[derive(Debug)]
pub struct ReceivedUpload {
    /// The rewritten multipart body (its length is the upstream Content-Length).
    pub body: Bytes,
    /// The Content-Type to send upstream (see [`UploadRequest::content_type`]).
    pub content_type: HeaderValue,
    /// The stored files; call [`UploadedFiles::finish`] with the final status.
    pub files: UploadedFiles,
}

/// Body bytes an upload processes before it lets the other tasks of its thread run: about a
/// tenth of a millisecond of parsing.
const PAUSE_EVERY: usize = 256 * 1024;

/// Receives a multipart body: streams file parts into the store (md5, size, optional sha256),
/// keeps or drops text parts per `policy`, and builds the rewritten form.
///
/// `body` yields the decoded body bytes in any chunking (hyper frames via
/// `http_body_util::BodyDataStream`); Content-Length or chunked framing does not matter (D8).
/// Results do not depend on the chunking (D6). On any error, and if this future is dropped
/// before it completes, every file it created is unlinked. After the close delimiter the rest of
/// the body is read and discarded (within the body cap) so the connection stays usable; after an
/// error it is not read, so the caller answers and then closes the connection (D7).
pub async fn receive<S, E>(
    body: S,
    request: &UploadRequest,
    config: &UploadConfig,
    policy: &dyn FieldPolicy,
) -> Result<ReceivedUpload, UploadError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    let limits = &config.limits;
    let mut body = std::pin::pin!(body);
    let mut parser = Parser::new(
        &request.boundary,
        ParserLimits {
            max_header_line: limits.max_header_line,
            max_header_bytes: limits.max_part_header_bytes,
            max_parts: limits.max_parts,
        },
    );
    let mut rx = Receiver {
        config,
        policy,
        sha256: policy.needs_sha256(),
        form: FormWriter::new(&request.boundary, limits.max_form_bytes),
        files: FileSet::new(config.store.clone()),
        stored: Vec::new(),
        file_count: 0,
        current: Current::None,
    };
    let mut received: u64 = 0;
    let mut since_pause: usize = 0;
    let streamed: Result<(), UploadError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UploadError::ClientBody(e.into()))?;
            received += chunk.len() as u64;
            since_pause += chunk.len();
            if since_pause >= PAUSE_EVERY {
                // A client that sends faster than we hash keeps its socket readable, and hyper
                // would go on reading (up to 16 buffers of ~400 KB per poll: milliseconds) while
                // every other request on this thread waits. Let them run.
                since_pause = 0;
                tokio::task::yield_now().await;
            }
            if received > limits.max_body_bytes {
                return Err(UploadError::BodyTooLarge);
            }
            if parser.is_done() {
                continue;
            }
            parser.push_bytes(chunk);
            while let Some(event) = parser.next_event()? {
                rx.handle(event).await?;
            }
        }
        parser.finish()?;
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        rx.current = Current::None; // lets go of the file being written
        rx.files.discard().await;
        return Err(e);
    }
    let Receiver { form, files, stored, .. } = rx;
    Ok(ReceivedUpload {
        body: form.finish(),
        content_type: request.content_type.clone(),
        files: files.into_uploaded(stored, config.cleanup.clone()),
    })
}

struct Receiver<'a> {
    config: &'a UploadConfig,
    policy: &'a dyn FieldPolicy,
    sha256: bool,
    form: FormWriter,
    files: FileSet,
    stored: Vec<StoredFile>,
    file_count: usize,
    current: Current,
}

enum Current {
    None,
    /// A text part; `value` is `None` when the policy dropped it (its data is discarded unread).
    Text {
        name: Bytes,
        value: Option<BytesMut>,
    },
    /// `filename=""`: a file if any data comes, else the browser's "no file chosen" (V7), which
    /// is an empty text field as in nginx-upload-module.
    NoFileChosen {
        head: PartHead,
    },
    File {
        head: PartHead,
        store_name: String,
        sink: FileSink,
    },
}

impl Receiver<'_> {
    async fn handle(&mut self, event: Event) -> Result<(), UploadError> {
        match event {
            Event::Part(head) => {
                self.current = match head.filename.as_ref().map(Bytes::is_empty) {
                    Some(true) => Current::NoFileChosen { head },
                    Some(false) => self.open_file(head).await?,
                    None => {
                        let decision = self.decide_text(&head.name).await?;
                        Current::Text { name: head.name, value: (decision == TextDecision::Pass).then(BytesMut::new) }
                    }
                };
            }
            Event::Data(data) => {
                if matches!(self.current, Current::NoFileChosen { .. })
                    && let Current::NoFileChosen { head } = std::mem::replace(&mut self.current, Current::None)
                {
                    self.current = self.open_file(head).await?;
                }
                match &mut self.current {
                    Current::Text { name, value: Some(value) } => {
                        self.form.check_room(name.len(), value.len() + data.len())?;
                        value.extend_from_slice(&data);
                    }
                    Current::File { sink, .. } => sink.write(data).await?,
                    _ => {}
                }
            }
            Event::PartEnd => match std::mem::replace(&mut self.current, Current::None) {
                Current::None | Current::Text { value: None, .. } => {}
                Current::Text { name, value: Some(value) } => self.form.push(&name, &value)?,
                Current::NoFileChosen { head } => {
                    if self.decide_text(&head.name).await? == TextDecision::Pass {
                        self.form.push(&head.name, b"")?;
                    }
                }
                Current::File { head, store_name, sink } => self.complete_file(head, store_name, sink).await?,
            },
            Event::End => {}
        }
        Ok(())
    }

    async fn decide_text(&self, name: &[u8]) -> Result<TextDecision, UploadError> {
        self.policy.text_field(name).await.map_err(UploadError::Policy)
    }

    async fn open_file(&mut self, head: PartHead) -> Result<Current, UploadError> {
        self.file_count += 1;
        if self.file_count > self.config.limits.max_files {
            return Err(UploadError::TooManyFiles(self.config.limits.max_files));
        }
        // Created off the event loop; no await separates the claim from the registration, and a
        // file nobody claimed (this future dropped meanwhile) is removed by `NewFile`.
        let (store_name, file) = self.config.store.create_file_off_loop().await?.claim()?;
        self.files.register(store_name.clone());
        Ok(Current::File { head, store_name, sink: FileSink::new(file, self.sha256) })
    }

    async fn complete_file(&mut self, head: PartHead, store_name: String, sink: FileSink) -> Result<(), UploadError> {
        let digests = sink.finish().await?;
        let raw_filename = head.filename.unwrap_or_default();
        let file = StoredFile {
            field_name: head.name,
            filename: sanitize_filename(&raw_filename),
            raw_filename,
            content_type: head.content_type.unwrap_or_default(),
            path: self.config.store.file_path(&store_name),
            store_name,
            size: digests.size,
            md5: digests.md5,
            sha256: digests.sha256,
        };
        let fields = self.policy.file_fields(&file).await.map_err(UploadError::Policy)?;
        for field in fields {
            self.form.push(&field.name, &field.value)?;
        }
        self.stored.push(file);
        Ok(())
    }
}
