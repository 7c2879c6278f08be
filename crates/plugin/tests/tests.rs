//! The plugin host against real plugin processes, and the SDK's standalone commands.

mod host;
mod standalone;
