package mediapulse;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import java.io.IOException;
import java.time.DateTimeException;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF3;
import org.apache.spark.sql.expressions.UserDefinedFunction;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataType;

/**
 * Stage 2 of the pipeline, one record at a time: parse a record's JSON once, with the Jackson parser Spark
 * itself parses JSON with, and check it against the event contract (streaming/schema.py, which passes the
 * contract's fields in; see streaming/parse.py for the Python side and docs/events.md for the rules).
 *
 * <p>Called as {@code validate(record, replayed, limit_us)}: the record's text, whether it arrived from a
 * replay folder (only then is its replay reference read), and the latest event time it may carry (its
 * arrival plus the allowed future skew, in epoch microseconds). Returns one row: the typed contract fields
 * (the event time in epoch microseconds), the reason codes in field order (empty when the record is
 * valid), and the replay reference's source and ingestion time (null unless replayed).
 *
 * <p>Strict JSON: a duplicate key, a single quote, NaN, a raw control character, a leading zero or anything
 * after the first value makes the record {@code malformed_json}. A JSON integer is one without fraction or
 * exponent that fits 64 bits; a string field takes only a JSON string.
 */
public final class RecordValidator implements UDF3<String, Boolean, Long, Row> {
  private static final long serialVersionUID = 1L;

  // Event times are stored between 0001-01-01 and 9999-12-31 UTC, as epoch milliseconds.
  private static final long MIN_EPOCH_MS = -62_135_596_800_000L;
  private static final long MAX_EPOCH_MS = 253_402_300_799_999L;
  private static final String[] NO_REASONS = new String[0];

  // What a field held: absent, JSON null, a string, a 64-bit integer, or any other JSON value.
  private static final byte ABSENT = 0;
  private static final byte NULL = 1;
  private static final byte STRING = 2;
  private static final byte INTEGER = 3;
  private static final byte OTHER = 4;

  private static final int ID = 0;
  private static final int ENUM = 1;
  private static final int EVENT_TIME = 2;
  private static final int WATCH_MS = 3;
  private static final int TEXT = 4;
  private static final int NUMBER = 5;

  private static final JsonFactory JSON =
      JsonFactory.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

  private final String[] names;
  private final int[] kinds;
  private final Set<String>[] choices;
  private final boolean[] lowerCase;
  private final Long[] defaults;
  private final Map<String, Integer> index = new HashMap<>();
  private final int maxIdBytes;
  private final Set<String> watchedTypes;
  private final int watchedTypeField;
  private final String replayField;

  /**
   * The contract, field by field in output order: name, kind ({@code id, enum, event_time, watch_ms,
   * string, integer}), accepted values of an enum, whether an enum compares lower-cased, and the value
   * stored when an integer field is absent (or null). {@code watchedTypes} are the values of {@code
   * watchedTypeField} (as sent) that require a {@code watch_ms} field.
   */
  @SuppressWarnings("unchecked")
  public RecordValidator(
      List<String> names,
      List<String> kinds,
      List<List<String>> choices,
      List<Boolean> lowerCase,
      List<? extends Number> defaults,
      int maxIdBytes,
      List<String> watchedTypes,
      String watchedTypeField,
      String replayField) {
    int n = names.size();
    this.names = names.toArray(new String[0]);
    this.kinds = new int[n];
    this.choices = new Set[n];
    this.lowerCase = new boolean[n];
    this.defaults = new Long[n];
    for (int i = 0; i < n; i++) {
      this.kinds[i] = kindOf(kinds.get(i));
      this.choices[i] = new HashSet<>(choices.get(i));
      this.lowerCase[i] = lowerCase.get(i);
      Number value = defaults.get(i);
      this.defaults[i] = value == null ? null : value.longValue();
      index.put(this.names[i], i);
    }
    this.maxIdBytes = maxIdBytes;
    this.watchedTypes = new HashSet<>(watchedTypes);
    this.watchedTypeField = names.indexOf(watchedTypeField);
    if (this.watchedTypeField < 0) {
      throw new IllegalArgumentException("no field " + watchedTypeField + " among " + names);
    }
    this.replayField = replayField;
  }

  private static int kindOf(String kind) {
    switch (kind) {
      case "id": return ID;
      case "enum": return ENUM;
      case "event_time": return EVENT_TIME;
      case "watch_ms": return WATCH_MS;
      case "string": return TEXT;
      case "integer": return NUMBER;
      default: throw new IllegalArgumentException("unknown field kind: " + kind);
    }
  }

  /**
   * Register the validator as a SQL function {@code name} returning {@code returnType}. Nondeterministic
   * to the optimizer, so it never copies the call into a filter or a second projection: each record is
   * parsed once, whatever the plan does with the result.
   */
  public static void register(SparkSession spark, String name, RecordValidator validator, String returnTypeJson) {
    UserDefinedFunction udf = functions.udf(validator, DataType.fromJson(returnTypeJson)).asNondeterministic();
    spark.udf().register(name, udf);
  }

  @Override
  public Row call(String record, Boolean replayed, Long limitMicros) {
    int n = names.length;
    byte[] held = new byte[n];
    String[] texts = new String[n];
    long[] integers = new long[n];
    Object[] reference = null;
    String recordReason = null;
    try (JsonParser parser = JSON.createParser(record)) {
      JsonToken first = parser.nextToken();
      if (first != JsonToken.START_OBJECT) {
        // Not an object: still one complete JSON value, or malformed.
        if (first == null) {
          recordReason = "malformed_json";
        } else {
          parser.skipChildren();
          recordReason = parser.nextToken() == null ? "not_an_object" : "malformed_json";
        }
      } else {
        JsonToken token;
        while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
          String name = parser.currentName();
          JsonToken value = parser.nextToken();
          Integer i = index.get(name);
          if (i != null) {
            held[i] = kindOfValue(parser, value);
            if (held[i] == STRING) {
              texts[i] = parser.getText();
            } else if (held[i] == INTEGER) {
              integers[i] = parser.getLongValue();
            } else {
              parser.skipChildren();
            }
          } else if (Boolean.TRUE.equals(replayed) && name.equals(replayField) && value == JsonToken.START_OBJECT) {
            reference = readReference(parser);
          } else {
            parser.skipChildren();
          }
        }
        // END_OBJECT, then nothing but whitespace.
        if (token != JsonToken.END_OBJECT || parser.nextToken() != null) {
          recordReason = "malformed_json";
        }
      }
    } catch (JsonProcessingException e) {
      recordReason = "malformed_json";
    } catch (IOException e) {
      throw new IllegalStateException("reading a JSON record from a string", e);
    }
    Object[] row = new Object[n + 3];
    if (recordReason != null) {
      row[n] = new String[] {recordReason};
      for (int i = 0; i < n; i++) {
        row[i] = kinds[i] == NUMBER ? defaults[i] : null; // what an absent field stores
      }
      return RowFactory.create(row);
    }
    List<String> reasons = null;
    for (int i = 0; i < n; i++) {
      String reason = check(i, held, texts, integers, limitMicros, row);
      if (reason != null) {
        if (reasons == null) {
          reasons = new ArrayList<>(2);
        }
        reasons.add(reason);
      }
    }
    row[n] = reasons == null ? NO_REASONS : reasons.toArray(NO_REASONS);
    if (reference != null) {
      row[n + 1] = reference[0];
      row[n + 2] = reference[1];
    }
    return RowFactory.create(row);
  }

  private static byte kindOfValue(JsonParser parser, JsonToken value) throws IOException {
    switch (value) {
      case VALUE_STRING:
        return STRING;
      case VALUE_NULL:
        return NULL;
      case VALUE_NUMBER_INT:
        JsonParser.NumberType type = parser.getNumberType();
        return type == JsonParser.NumberType.INT || type == JsonParser.NumberType.LONG ? INTEGER : OTHER;
      default:
        return OTHER;
    }
  }

  /** A replay reference object: its source (a string) and ingestion time (an integer), else nulls. */
  private static Object[] readReference(JsonParser parser) throws IOException {
    Object[] reference = new Object[2];
    JsonToken token;
    while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
      String name = parser.currentName();
      JsonToken value = parser.nextToken();
      if (name.equals("source") && value == JsonToken.VALUE_STRING) {
        reference[0] = parser.getText();
      } else if (name.equals("ingest_time_us") && kindOfValue(parser, value) == INTEGER) {
        reference[1] = parser.getLongValue();
      } else {
        parser.skipChildren();
      }
    }
    return reference;
  }

  /** Check field {@code i}, store its typed value in {@code row[i]}; its reason code, or null. */
  private String check(int i, byte[] held, String[] texts, long[] integers, long limitMicros, Object[] row) {
    byte h = held[i];
    String name = names[i];
    boolean present = h != ABSENT && h != NULL;
    String text = texts[i];
    switch (kinds[i]) {
      case ID: {
        row[i] = text;
        if (!present) return "missing_field:" + name;
        if (h != STRING) return "wrong_type:" + name;
        int size = utf8Length(text);
        return size >= 1 && size <= maxIdBytes ? null : "bad_length:" + name;
      }
      case ENUM: {
        String value = text != null && lowerCase[i] ? lowerCase(text) : text;
        row[i] = value;
        if (!present) return "missing_field:" + name;
        if (h != STRING) return "wrong_type:" + name;
        return choices[i].contains(value) ? null : "unknown_" + name;
      }
      case EVENT_TIME: {
        Long micros = h == STRING ? parseRfc3339(text) : h == INTEGER ? fromMillis(integers[i]) : null;
        row[i] = micros;
        if (!present) return "missing_field:" + name;
        if (h != STRING && h != INTEGER) return "wrong_type:" + name;
        if (micros == null) return "bad_event_time";
        return micros > limitMicros ? "event_time_in_future" : null;
      }
      case WATCH_MS: {
        String type = texts[watchedTypeField];
        boolean watched = type != null && watchedTypes.contains(type);
        Long value = h == INTEGER ? integers[i] : null;
        row[i] = watched ? value : null;
        return watched && (value == null || value < 0) ? "bad_watch_ms" : null;
      }
      case TEXT:
        row[i] = text;
        return h != STRING && present ? "wrong_type:" + name : null;
      default: { // NUMBER
        row[i] = h == INTEGER ? Long.valueOf(integers[i]) : defaults[i];
        return h != INTEGER && present ? "wrong_type:" + name : null;
      }
    }
  }

  private static String lowerCase(String text) {
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (c >= 'A' && c <= 'Z' || c >= 0x80) {
        return text.toLowerCase(java.util.Locale.ROOT);
      }
    }
    return text;
  }

  /** Bytes of a string in UTF-8, as Spark stores it (an unpaired surrogate becomes one byte, '?'). */
  static int utf8Length(String s) {
    int bytes = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c < 0x80) {
        bytes += 1;
      } else if (c < 0x800) {
        bytes += 2;
      } else if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
        bytes += 4;
        i++;
      } else if (Character.isSurrogate(c)) {
        bytes += 1;
      } else {
        bytes += 3;
      }
    }
    return bytes;
  }

  private static Long fromMillis(long millis) {
    return millis >= MIN_EPOCH_MS && millis <= MAX_EPOCH_MS ? millis * 1000 : null;
  }

  /**
   * An RFC 3339 date-time with seconds and a zone ({@code Z} or {@code +hh:mm}, hours to 23), fraction
   * truncated to microseconds, as epoch microseconds; null when it is not one or lies outside the stored
   * range.
   */
  static Long parseRfc3339(String s) {
    // yyyy-mm-ddThh:mm:ss[.f{1,9}](Z|+hh:mm|-hh:mm)
    int length = s.length();
    if (length < 20
        || !digits(s, 0, 4) || s.charAt(4) != '-' || !digits(s, 5, 7) || s.charAt(7) != '-'
        || !digits(s, 8, 10) || s.charAt(10) != 'T' || !digits(s, 11, 13) || s.charAt(13) != ':'
        || !digits(s, 14, 16) || s.charAt(16) != ':' || !digits(s, 17, 19)) {
      return null;
    }
    int at = 19;
    long micros = 0;
    if (s.charAt(at) == '.') {
      int start = ++at;
      while (at < length && isDigit(s.charAt(at))) {
        at++;
      }
      int count = at - start;
      if (count < 1 || count > 9) {
        return null;
      }
      for (int k = 0; k < 6; k++) {
        micros = micros * 10 + (start + k < at ? s.charAt(start + k) - '0' : 0);
      }
    }
    if (at >= length) {
      return null;
    }
    int offsetSeconds;
    char zone = s.charAt(at);
    if (zone == 'Z' && at + 1 == length) {
      offsetSeconds = 0;
    } else if ((zone == '+' || zone == '-') && at + 6 == length && digits(s, at + 1, at + 3)
        && s.charAt(at + 3) == ':' && digits(s, at + 4, at + 6)) {
      int hours = number(s, at + 1, at + 3);
      int minutes = number(s, at + 4, at + 6);
      if (hours > 23 || minutes > 59) {
        return null;
      }
      offsetSeconds = (zone == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
    } else {
      return null;
    }
    int hour = number(s, 11, 13);
    int minute = number(s, 14, 16);
    int second = number(s, 17, 19);
    if (hour > 23 || minute > 59 || second > 59) {
      return null;
    }
    long days;
    try {
      days = LocalDate.of(number(s, 0, 4), number(s, 5, 7), number(s, 8, 10)).toEpochDay();
    } catch (DateTimeException e) {
      return null;
    }
    long seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds;
    long result = seconds * 1_000_000 + micros;
    long millis = Math.floorDiv(result, 1000);
    return millis >= MIN_EPOCH_MS && millis <= MAX_EPOCH_MS ? result : null;
  }

  private static boolean isDigit(char c) {
    return c >= '0' && c <= '9';
  }

  private static boolean digits(String s, int from, int to) {
    if (to > s.length()) {
      return false;
    }
    for (int i = from; i < to; i++) {
      if (!isDigit(s.charAt(i))) {
        return false;
      }
    }
    return true;
  }

  private static int number(String s, int from, int to) {
    int value = 0;
    for (int i = from; i < to; i++) {
      value = value * 10 + (s.charAt(i) - '0');
    }
    return value;
  }
}
