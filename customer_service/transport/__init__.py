"""The trio-native WebSocket transport: a pure RFC 6455 codec plus the socket glue that drives it."""
