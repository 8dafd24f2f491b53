//! Routing: which subscriptions a published message goes to.
