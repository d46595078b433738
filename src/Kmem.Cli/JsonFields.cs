// The shapes every JSON report of the command repeats: an array of strings, a number that may be
// absent (written as null, so a reader sees the field either way), an array of objects, one per
// row, and an object of named objects. Stateless; the writer is the caller's.
using System.Text.Json;

namespace Kmem.Cli;

internal static class JsonFields
{
    /// <summary>"name": ["a", "b", …].</summary>
    public static void Strings(Utf8JsonWriter j, string name, IEnumerable<string> values)
    {
        j.WriteStartArray(name);
        foreach (string v in values)
        {
            j.WriteStringValue(v);
        }
        j.WriteEndArray();
    }

    /// <summary>"name": n, or "name": null when there is no value.</summary>
    public static void NumberOrNull(Utf8JsonWriter j, string name, long? value)
    {
        if (value is long n)
        {
            j.WriteNumber(name, n);
        }
        else
        {
            j.WriteNull(name);
        }
    }

    /// <summary>"name": [{…}, …]: one object per row, its fields written by <paramref name="fields"/>.</summary>
    public static void Objects<T>(Utf8JsonWriter j, string name, IEnumerable<T> rows, Action<Utf8JsonWriter, T> fields)
    {
        j.WriteStartArray(name);
        foreach (T row in rows)
        {
            j.WriteStartObject();
            fields(j, row);
            j.WriteEndObject();
        }
        j.WriteEndArray();
    }

    /// <summary>"name": {"key": {…}, …}: one object per entry, named by its key, its fields written by <paramref name="fields"/>.</summary>
    public static void Named<T>(Utf8JsonWriter j, string name, IEnumerable<KeyValuePair<string, T>> entries, Action<Utf8JsonWriter, T> fields)
    {
        j.WriteStartObject(name);
        foreach (var (key, value) in entries)
        {
            j.WriteStartObject(key);
            fields(j, value);
            j.WriteEndObject();
        }
        j.WriteEndObject();
    }
}
